"""The one exception tree of Stopgate.

Every component raises one of these; nothing returns error values. They are translated exactly
once, at the edge: ``gateway.http.errors.ERROR_MAP`` for the API (a test pins that every leaf
class below has an entry), ``gateway.cli`` for commands (message on stderr, exit status 1).

    StopgateError
    ├── ConfigError                 settings or start-up wiring is wrong
    ├── RequestError                the client's request is invalid                      -> 400
    │   ├── ModelNotFound           unknown ``model``                                     -> 404
    │   ├── ContextLengthExceeded   prompt + max_tokens longer than the model's context  -> 400
    │   ├── UnsupportedParameter    a request field this worker cannot honour (``param``) -> 400
    │   └── UnknownDomain           a domain name nobody defined                          -> 404
    ├── AuthError                   missing or wrong API key                              -> 401
    │   └── AdminAuthError          missing or wrong admin key                            -> 401
    ├── RateLimited                 too many concurrent streams / requests                -> 429
    ├── DefinitionError             a YAML document (policy, domain) is invalid           -> 422
    ├── StoreUnavailable            Redis is unreachable for a write                      -> 503
    ├── NotReady                    the model is still loading                            -> 503
    │   └── Draining                the gateway is shutting down (SIGTERM)                -> 503
    └── WorkerError                 the model worker failed mid-request                   -> 502
        └── WorkerUnavailable       no worker could be reached                            -> 503
"""

from __future__ import annotations

from dataclasses import dataclass


class StopgateError(Exception):
    """Base of every error Stopgate raises on purpose."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ConfigError(StopgateError):
    """Settings or start-up wiring is wrong."""


class RequestError(StopgateError):
    """The client's request is invalid."""


class ModelNotFound(RequestError):
    """The request names a model this gateway does not serve."""


class ContextLengthExceeded(RequestError):
    """Prompt plus requested tokens do not fit the model's context."""


class UnsupportedParameter(RequestError):
    """A valid OpenAI field the worker cannot honour (``tools`` on a template without tools...)."""


class UnknownDomain(RequestError):
    """A domain name that no domain definition declares."""


class AuthError(StopgateError):
    """Missing or wrong API key."""


class AdminAuthError(AuthError):
    """Missing or wrong admin key."""


class RateLimited(StopgateError):
    """Over a concurrency or rate limit; ``retry_after`` in seconds."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem in a YAML document: file, line (1-based, 0 if unknown) and field path."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class DefinitionError(StopgateError):
    """A policy or domain document is invalid; ``problems`` lists every located error."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = problems[0] if problems else None
        super().__init__(
            "; ".join(str(p) for p in problems) or "invalid document",
            param=first.field if first else None,
        )


class StoreUnavailable(StopgateError):
    """Redis is unreachable, so a write cannot be made durable."""


class NotReady(StopgateError):
    """The model (or another start-up dependency) is not loaded yet."""


class Draining(NotReady):
    """The gateway is draining for shutdown: it takes no new requests and ends late streams."""


class WorkerError(StopgateError):
    """The model worker failed while serving a request."""


class WorkerUnavailable(WorkerError):
    """No model worker could be reached."""
