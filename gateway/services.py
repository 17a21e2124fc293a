"""The container of long-lived services that ``create_app`` builds and controllers receive.

Controllers declare a ``services: Services`` parameter (Litestar dependency injection); nothing
else reaches for globals. The lifespan builds every part complete and attaches it once
(``attach``); a part that is not configured stays None. A plain class on purpose: Litestar passes
it through untouched, where a dataclass would be introspected as a request-body type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.errors import NotReady

if TYPE_CHECKING:
    from gateway.audit.log import AuditLog
    from gateway.autopilot.runner import AutopilotRunner
    from gateway.classify.classifier import Classifier
    from gateway.metrics import Metrics
    from gateway.policy.store import PolicyStore
    from gateway.ratelimit import RateLimiter
    from gateway.serving.chat import ChatService
    from gateway.settings import Settings
    from gateway.worker.protocol import Worker


class Services:
    def __init__(self, settings: Settings, worker: Worker, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.worker = worker
        self.metrics = metrics
        self.classifier: Classifier | None = None
        self.policies: PolicyStore | None = None
        self.audit: AuditLog | None = None
        self.ratelimit: RateLimiter | None = None
        self.chat: ChatService | None = None
        self.autopilot: AutopilotRunner | None = None

    def attach(self, **parts: Any) -> None:
        """Hand over parts the lifespan has built and started (each complete)."""
        for name, part in parts.items():
            if not hasattr(self, name):
                raise AttributeError(f"Services has no part {name!r}")
            setattr(self, name, part)

    def require_chat(self) -> ChatService:
        if self.chat is None:
            raise NotReady("The gateway is starting up; retry shortly.")
        return self.chat
