"""``GET /admin/audit``: the audit trail, filtered, behind the admin key."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import Dependency, Parameter

from gateway.audit.query import AuditFilter, parse_time
from gateway.audit.record import AuditRecord
from gateway.errors import NotReady
from gateway.http.guards import admin_guard
from gateway.services import Services

MAX_LIMIT = 10_000
_TIME = "ISO 8601 time (2026-05-01T12:00:00Z), or a span back from now: 15m, 2h, 7d"


class AuditController(Controller):
    path = "/admin/audit"
    tags = ["admin"]  # noqa: RUF012 - Litestar reads it from the class
    guards = [admin_guard]  # noqa: RUF012

    @get("/", summary="Audit records, most recent matches, oldest first")
    async def list_records(
        self,
        request: Request[Any, Any, Any],
        # skip_validation: the container is ours, and msgspec would try to validate it field by field.
        services: Annotated[Services, Dependency(skip_validation=True)],
        domain: str | None = None,
        since: Annotated[str | None, Parameter(description=_TIME)] = None,
        until: Annotated[str | None, Parameter(description=_TIME)] = None,
        stop_rule: Annotated[str | None, Parameter(description="a rule name; 'none': no rule fired")] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 100,
    ) -> dict[str, list[AuditRecord]]:
        flt = AuditFilter(
            since=parse_time(since, param="since") if since else None,
            until=parse_time(until, param="until") if until else None,
            domain=domain or None,
            stop_rule=stop_rule or None,
            limit=limit,
        )
        if services.audit is None:
            raise NotReady("the audit log is not running")
        result = await services.audit.query(flt)
        return {"data": result.records}
