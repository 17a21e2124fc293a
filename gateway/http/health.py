"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get

from gateway.errors import NotReady
from gateway.services import Services


class HealthController(Controller):
    include_in_schema = True

    @get("/healthz", summary="Alive")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", summary="Ready: model loaded; 'degraded' with reasons when Redis is unreachable")
    async def readyz(self, request: Request[Any, Any, Any], services: Services) -> Response[dict[str, Any]]:
        drain = request.app.state.get("drain")
        if drain is not None and drain.draining:  # SIGTERM: take this replica out of rotation at once
            return Response({"status": "draining", "reasons": ["shutting down"]}, status_code=503)
        if not services.worker.ready:
            return Response({"status": "loading", "reasons": ["model is loading"]}, status_code=503)
        reasons = [
            f"{name}: {part.degraded_reason}"
            for name, part in (("policies", services.policies), ("audit", services.audit))
            if part is not None and getattr(part, "degraded_reason", None)
        ]
        return Response(
            {"status": "degraded" if reasons else "ready", "reasons": reasons, "model": services.worker.model_id}
        )

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
    async def metrics(self, services: Services) -> Response[bytes]:
        if services.metrics is None:
            raise NotReady("metrics are not configured in this process")
        return Response(services.metrics.render(), media_type="text/plain; version=0.0.4")
