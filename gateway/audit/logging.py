"""Structured logging for the whole app: JSON lines on stderr, via structlog.

Every line has ``timestamp`` (ISO 8601 UTC), ``level`` and ``event``, plus whatever is bound in
``structlog.contextvars`` (the request pipeline binds ``request_id`` per request). Standard-library
loggers (uvicorn, litestar) are routed through the same renderer. Keys that could carry prompt or
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


def drop_text(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace values that may be user text by their length."""
    for key in TEXT_KEYS.intersection(event):
        value = event[key]
        event[key] = f"<redacted {len(value)} chars>" if isinstance(value, str) else "<redacted>"
    return event


class _Stderr:
    """Writes to whatever ``sys.stderr`` is at the time (test capture swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", *, log_prompts: bool = False, stream: TextIO | None = None) -> None:
    """Set up structlog and the stdlib root logger; safe to call more than once."""
    numeric = LEVELS.get(level.strip().lower())
    if numeric is None:
        raise ConfigError(f"STOPGATE_LOG_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}")
    out: TextIO = stream if stream is not None else cast(TextIO, _Stderr())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
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
    structlog.configure(
        processors=[*shared, *tail, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tail,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_stopgate", False)]:
        root.removeHandler(old)
    handler._stopgate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
