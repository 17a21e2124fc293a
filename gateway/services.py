"""The container of long-lived services that ``create_app`` builds and controllers receive.

Controllers declare a ``services: Services`` parameter (Litestar dependency injection); nothing
else reaches for globals. A plain class on purpose: Litestar passes it through untouched,
where a dataclass would be introspected as a request-body type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.settings import Settings
    from gateway.worker.protocol import Worker


class Services:
    def __init__(self, settings: Settings, worker: Worker, **parts: Any) -> None:
        self.settings = settings
        self.worker = worker
        # Filled in by create_app as components start; None where a part is not configured.
        self.classifier: Any = parts.get("classifier")
        self.policies: Any = parts.get("policies")
        self.audit: Any = parts.get("audit")
        self.chat: Any = parts.get("chat")
        self.metrics: Any = parts.get("metrics")
        self.ratelimit: Any = parts.get("ratelimit")
