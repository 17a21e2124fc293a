"""``/admin/autopilot``: per domain, samples held, current agreement and bound, last change and why.

``POST /admin/autopilot/{domain}/propose`` runs the tuner now and keeps its proposal without writing
a version; ``POST /admin/autopilot/{domain}/apply`` writes the pending proposal.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get, post
from litestar.params import Dependency

from gateway.autopilot.runner import AutopilotRunner
from gateway.errors import NotReady
from gateway.http.guards import admin_guard
from gateway.services import Services


def _runner(services: Services, domain: str | None = None) -> AutopilotRunner:
    runner: AutopilotRunner | None = getattr(services, "autopilot", None)
    if runner is None:
        raise NotReady("autopilot is not running")
    if domain is not None and services.policies is not None:
        services.policies.check_domain(domain)
    return runner


class AdminAutopilotController(Controller):
    path = "/admin/autopilot"
    tags = ["admin"]  # noqa: RUF012 - Litestar reads it from the class
    guards = [admin_guard]  # noqa: RUF012

    @get("/", summary="Autopilot per domain: samples, agreement and bound, last change and why")
    async def status(self, services: Annotated[Services, Dependency(skip_validation=True)]) -> dict[str, Any]:
        runner = _runner(services)
        return {"data": await runner.status()}

    @post("/{domain:str}/propose", status_code=200, summary="Tune now; keep the result as a proposal")
    async def propose(
        self,
        services: Annotated[Services, Dependency(skip_validation=True)],
        domain: str,
    ) -> dict[str, Any]:
        runner = _runner(services, domain)
        report = await runner.run_domain(domain, mode="propose", force=True)
        if report is None:
            raise NotReady("another replica is tuning; retry shortly")
        return report

    @post("/{domain:str}/apply", status_code=200, summary="Write the pending proposal as the next version")
    async def apply(
        self,
        services: Annotated[Services, Dependency(skip_validation=True)],
        domain: str,
    ) -> dict[str, Any]:
        runner = _runner(services, domain)
        return await runner.apply_proposal(domain)
