"""What the request pipeline needs from the parts around it, as Protocols.

``ChatService`` is written against these, not against the classes that implement them
(``Classifier``, ``PolicyStore``, ``AuditLog``, ``RateLimiter``, the autopilot's sample store), so
a unit test can hand it a scripted stand-in and the pipeline never imports Redis or torch.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.audit.record import AuditRecord
    from gateway.policy.store import ActivePolicy
    from gateway.serving.outcome import Outcome


class DomainNames(Protocol):
    @property
    def names(self) -> Collection[str]: ...


class DomainClassifier(Protocol):
    @property
    def domains(self) -> DomainNames: ...

    async def aclassify(self, query: Any) -> Any:
        """A ``Classification`` (domain, confidence, scores) for a text or message list."""


class PolicySource(Protocol):
    def get(self, domain: str) -> ActivePolicy:
        """The active policy of ``domain`` (or the default), from an in-process snapshot."""


class AuditSink(Protocol):
    def submit(self, record: AuditRecord) -> None:
        """Queue one record; never blocks the token path."""


class RequestLimiter(Protocol):
    async def check(self, key_id: str) -> None:
        """Raise ``RateLimited`` when ``key_id`` is over its request rate."""

    def submit_tokens(self, key_id: str, tokens: int) -> None:
        """Count a finished request's tokens against ``key_id`` (off the token path)."""


class StreamMetrics(Protocol):
    def stream_opened(self) -> None: ...

    def stream_closed(self, domain: str, outcome: Outcome, ttft_ms: float | None) -> None: ...
