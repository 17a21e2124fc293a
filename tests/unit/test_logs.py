"""The app's structlog setup: JSON lines with timestamp, level, event and bound request context."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from gateway.errors import ConfigError
from gateway.logs import configure_logging


@pytest.fixture()
def captured() -> Iterator[io.StringIO]:
    """Configure logging into a buffer; restore structlog and the root logger afterwards."""
    buf = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    configure_logging("info", stream=buf)
    yield buf
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    root.handlers[:] = before[0]
    root.setLevel(before[1])


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_lines_are_json_with_timestamp_level_event_and_request_id(captured):
    """Each line is a JSON object carrying timestamp, level, event and the bound request_id."""
    with structlog.contextvars.bound_contextvars(request_id="req-42"):
        structlog.get_logger().info("stream_started", tokens=3)
    (line,) = lines(captured)
    assert line["event"] == "stream_started" and line["level"] == "info" and line["tokens"] == 3
    assert line["request_id"] == "req-42"
    assert line["timestamp"].endswith("Z")


def test_level_filters_debug(captured):
    """At level info, debug lines are not written."""
    structlog.get_logger().debug("noise")
    assert lines(captured) == []


def test_prompt_text_is_redacted(captured):
    """Keys that may hold user text are replaced by their length."""
    structlog.get_logger().info("got", prompt="secret question", messages=[{"content": "x"}])
    (line,) = lines(captured)
    assert "secret" not in json.dumps(line)
    assert line["prompt"] == "<redacted 15 chars>" and line["messages"] == "<redacted>"


def test_log_prompts_keeps_text():
    """With log_prompts on, text keys are kept (an explicit operator choice)."""
    buf = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        configure_logging("info", log_prompts=True, stream=buf)
        structlog.get_logger().info("got", prompt="visible")
        assert json.loads(buf.getvalue())["prompt"] == "visible"
    finally:
        structlog.reset_defaults()
        root.handlers[:] = before


def test_tracebacks_carry_no_local_variables(captured):
    """An exception is logged as a structured traceback without the frames' locals."""

    def fails() -> None:
        hidden_prompt = "the user's private words"
        raise ValueError("bad " + str(len(hidden_prompt)))

    try:
        fails()
    except ValueError:
        structlog.get_logger().exception("request_failed")
    out = captured.getvalue()
    assert "private words" not in out
    (line,) = lines(captured)
    assert line["exception"][0]["exc_type"] == "ValueError"


def test_stdlib_loggers_are_rendered_as_json(captured):
    """uvicorn/litestar style stdlib logging goes out as the same JSON lines."""
    logging.getLogger("uvicorn.error").warning("port %d busy", 8000)
    (line,) = lines(captured)
    assert line["event"] == "port 8000 busy" and line["level"] == "warning"


def test_unknown_level_is_a_config_error():
    """A misspelt level is refused, naming the setting."""
    with pytest.raises(ConfigError, match="STOPGATE_LOG_LEVEL"):
        configure_logging("loud")


def test_library_info_noise_is_off_and_warnings_are_kept(captured):
    """httpx's per-request INFO line (a health poll) is dropped; its warnings come out as JSON with the logger."""
    logging.getLogger("httpx").info('HTTP Request: GET http://w/healthz "HTTP/1.1 200 OK"')
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /readyz HTTP/1.1" 200')
    logging.getLogger("httpx").warning("upstream slow")
    (line,) = lines(captured)
    assert line["event"] == "upstream slow" and line["logger"] == "httpx"


def test_a_library_that_installs_its_own_logging_is_taken_back(captured):
    """Litestar's default config (plain-text handlers on its logger and the root) is undone by adopt."""
    from litestar import Litestar

    from gateway.logs import adopt_library_loggers

    Litestar(route_handlers=[])  # applies Litestar's own dictConfig
    adopt_library_loggers()
    logging.getLogger("litestar").warning("from litestar")
    logging.getLogger("transformers.modeling_utils").warning("from transformers")
    got = lines(captured)
    assert [(x["logger"], x["event"]) for x in got] == [
        ("litestar", "from litestar"),
        ("transformers.modeling_utils", "from transformers"),
    ]


def test_console_renderer_only_on_a_terminal():
    """A stream that is a TTY gets readable lines; fmt=json forces JSON even there."""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    before = list(root.handlers)
    try:
        for fmt, is_json in (("auto", False), ("json", True)):
            buf = Tty()
            configure_logging("info", stream=buf, fmt=fmt)
            structlog.get_logger().info("hello_tty")
            text = buf.getvalue().strip()
            assert text.startswith("{") is is_json and "hello_tty" in text
    finally:
        structlog.reset_defaults()
        root.handlers[:] = before
