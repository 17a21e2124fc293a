"""The one translation of ``gateway.errors`` into HTTP: status, OpenAI ``type`` and ``code``.

``ERROR_MAP`` is looked up by walking the exception's MRO, so a subclass without its own row gets
its parent's; a test pins that every class in the tree has a row of its own anyway.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException

from gateway import errors as e

log = structlog.get_logger(__name__)

# exception class -> (HTTP status, OpenAI error type, OpenAI error code)
ERROR_MAP: dict[type[e.StopgateError], tuple[int, str, str | None]] = {
    e.StopgateError: (500, "server_error", "internal_error"),
    e.ConfigError: (500, "server_error", "config_error"),
    e.RequestError: (400, "invalid_request_error", None),
    e.ModelNotFound: (404, "invalid_request_error", "model_not_found"),
    e.ContextLengthExceeded: (400, "invalid_request_error", "context_length_exceeded"),
    e.UnsupportedParameter: (400, "invalid_request_error", "unsupported_parameter"),
    e.UnknownDomain: (404, "invalid_request_error", "unknown_domain"),
    e.AuthError: (401, "authentication_error", "invalid_api_key"),
    e.AdminAuthError: (401, "authentication_error", "invalid_admin_key"),
    e.RateLimited: (429, "rate_limit_error", "rate_limit_exceeded"),
    e.DefinitionError: (422, "invalid_request_error", "invalid_document"),
    e.StoreUnavailable: (503, "server_error", "store_unavailable"),
    e.NotReady: (503, "server_error", "not_ready"),
    e.Draining: (503, "server_error", "shutting_down"),
    e.WorkerError: (502, "server_error", "worker_error"),
    e.WorkerUnavailable: (503, "server_error", "worker_unavailable"),
}


def describe(exc: e.StopgateError) -> tuple[int, dict[str, Any]]:
    """Status and OpenAI error body for one of our exceptions."""
    for cls in type(exc).__mro__:
        if cls in ERROR_MAP:
            status, etype, code = ERROR_MAP[cls]
            break
    body: dict[str, Any] = {"message": exc.message, "type": etype, "param": exc.param, "code": code}
    if isinstance(exc, e.DefinitionError):
        body["problems"] = [
            {"file": p.file, "line": p.line, "field": p.field, "message": p.message} for p in exc.problems
        ]
    return status, {"error": body}


def error_body(
    message: str, etype: str = "invalid_request_error", code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


def internal_error(message: str = "internal error") -> dict[str, Any]:
    """The body for a failure that is not a ``StopgateError`` (a bug): no details, the base class's row."""
    _, etype, code = ERROR_MAP[e.StopgateError]
    return error_body(message, etype, code)


def stopgate_error_handler(_: Request[Any, Any, Any], exc: e.StopgateError) -> Response[Any]:
    status, body = describe(exc)
    headers = {"retry-after": str(exc.retry_after)} if isinstance(exc, e.RateLimited) else None
    return Response(content=body, status_code=status, headers=headers)


def http_error_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own errors (bad JSON, validation, 404 routes) in the OpenAI shape."""
    status = exc.status_code
    message = str(exc.detail)
    param = None
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict):
            param = str(first.get("key") or "") or None
            message = f"{exc.detail}: {first.get('message', '')}".strip(": ")
    code = "not_found" if isinstance(exc, NotFoundException) else None
    etype = "invalid_request_error" if status < 500 else "server_error"
    return Response(
        content=error_body(message, etype, code, param), status_code=status, headers=getattr(exc, "headers", None)
    )


def decode_error_handler(_: Request[Any, Any, Any], exc: msgspec.ValidationError) -> Response[Any]:
    return Response(content=error_body(str(exc)), status_code=400)


def internal_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # A bug, not a client error: log it with its traceback (no locals), answer without details.
    log.error("unhandled_error", exc_info=exc)
    return Response(content=internal_error(), status_code=ERROR_MAP[e.StopgateError][0])


EXCEPTION_HANDLERS = {
    e.StopgateError: stopgate_error_handler,
    HTTPException: http_error_handler,
    msgspec.ValidationError: decode_error_handler,
    msgspec.DecodeError: decode_error_handler,
    Exception: internal_error_handler,
}
