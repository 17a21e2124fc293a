"""Structured logging for every Stopgate process: one structlog configuration for every logger.

Every line has ``timestamp`` (ISO 8601 UTC), ``level``, ``logger`` and ``event``, plus whatever is
bound in ``structlog.contextvars`` (the request pipeline binds ``request_id`` per request). Our own
loggers and the standard-library ones of libraries (uvicorn, httpx, httpcore, litestar, transformers,
Python warnings) go through the same processors and one handler; libraries that install their own
handlers (litestar's default config, transformers) are taken back by ``adopt_library_loggers``.
JSON lines by default; the console renderer only when the log stream is a terminal (``make run``),
or as ``STOPGATE_LOG_FORMAT`` says. Library INFO chatter (httpx's ``HTTP Request:`` line per health
poll, uvicorn's access lines) is off unless the level is ``debug``. Keys that could carry prompt or
completion text are dropped unless ``log_prompts`` is on; tracebacks never include local variables.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from gateway.errors import ConfigError

TEXT_KEYS = frozenset({"prompt", "prompt_text", "messages", "completion", "completion_text", "content", "text"})
"""Event keys whose values may hold user text; redacted from logs unless ``log_prompts`` is on."""

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

FORMATS = ("auto", "json", "console")

QUIET_LIBRARIES = ("httpx", "httpcore", "urllib3", "uvicorn.access", "hpack", "filelock", "asyncio", "multipart")
"""Loggers whose INFO lines are per-request or per-poll noise: raised to WARNING unless the level is debug."""

LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar", "transformers", "huggingface_hub", "torch")
"""Loggers that libraries give handlers of their own; routed to ours instead (``adopt_library_loggers``)."""

_MARK = "_stopgate"
_installed: list[logging.Handler] = []  # the handler configure_logging put on the root logger, if any


def drop_text(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace values that may be user text by their length."""
    for key in TEXT_KEYS.intersection(event):
        value = event[key]
        event[key] = f"<redacted {len(value)} chars>" if isinstance(value, str) else "<redacted>"
    return event


def _logger_name(logger: Any, _: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the stdlib logger's name as ``logger`` (what ``add_logger_name`` does, safely)."""
    if "logger" not in event:
        record = event.get("_record")
        name = getattr(record, "name", None) or getattr(logger, "name", None)
        if name:
            event["logger"] = name
    return event


def _drop_color_message(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: uvicorn passes a colored copy of its message as an extra; one is enough."""
    event.pop("color_message", None)
    return event


class _Stderr:
    """Writes to whatever ``sys.stderr`` is at the time (test capture swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _renderer(fmt: str, out: Any) -> Any:
    if fmt not in FORMATS:
        raise ConfigError(f"STOPGATE_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    console = fmt == "console" or (fmt == "auto" and bool(getattr(out, "isatty", lambda: False)()))
    if console:
        return structlog.dev.ConsoleRenderer(colors=fmt == "auto", exception_formatter=structlog.dev.plain_traceback)
    return structlog.processors.JSONRenderer()


def configure_logging(
    level: str = "info", *, log_prompts: bool = False, stream: TextIO | None = None, fmt: str = "auto"
) -> None:
    """Set up structlog, the root logger and the library loggers; safe to call more than once."""
    numeric = LEVELS.get(level.strip().lower())
    if numeric is None:
        raise ConfigError(f"STOPGATE_LOG_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}")
    out: TextIO = stream if stream is not None else cast(TextIO, _Stderr())
    renderer = _renderer(fmt.strip().lower(), out)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if not log_prompts:
        shared.append(drop_text)
    tail: list[Any] = [
        structlog.processors.StackInfoRenderer(),
        # show_locals=False: a traceback must never carry a prompt that sat in a local variable.
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False, use_rich=False)),
        structlog.processors.UnicodeDecoder(),
    ]
    if isinstance(renderer, structlog.dev.ConsoleRenderer):
        tail = tail[:1] + tail[2:]  # the console renderer formats tracebacks itself
    # Our loggers are stdlib loggers too, so that one handler (and one renderer) serves every line.
    structlog.configure(
        processors=[*shared, *tail, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_color_message, *tail],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    _installed[:] = [handler]
    root.setLevel(numeric)
    logging.captureWarnings(True)  # warnings.warn lines become log records too
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    adopt_library_loggers()


def adopt_library_loggers() -> None:
    """Route library loggers that carry their own handlers (litestar's config, transformers) to ours.

    Call again after building an app: Litestar applies its own logging config when constructed."""
    if not _installed:
        return  # logging is not ours to manage (a library user, a test harness)
    ours = _installed[0]
    root = logging.getLogger()
    # Litestar's dictConfig replaces the root logger's handlers: put ours back, alone.
    for h in [h for h in root.handlers if h is not ours]:
        root.removeHandler(h)
    if ours not in root.handlers:
        root.addHandler(ours)
    families = {n.split(".", 1)[0] for n in LIBRARY_LOGGERS}
    names = set(LIBRARY_LOGGERS)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".", 1)[0] in families:
            names.add(name)
    for name in names:
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logger.propagate = True
