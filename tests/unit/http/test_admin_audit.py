"""GET /admin/audit: admin key required, filters passed through, records returned under "data"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from gateway.app import http_app
from gateway.audit.log import AuditLog
from gateway.audit.record import AuditRecord, encode_record
from gateway.http.admin_audit import AuditController
from gateway.services import Services
from gateway.settings import Settings
from tests.audit_records import COMPACT, build_record

ADMIN = {"Authorization": "Bearer adm-key"}


def record(request_id: str, domain: str, stop_rule: str | None, ts: str) -> AuditRecord:
    return build_record(request_id, **{**COMPACT, "ts": ts, "domain": domain, "policy": domain, "stop_rule": stop_rule})


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient[Litestar]]:
    """An app with only the audit controller, over a JSON lines file with three records."""
    log_path = tmp_path / "audit.jsonl"
    recs = [
        record("a", "math", "repetition", "2026-05-01T10:00:00.000Z"),
        record("b", "code", None, "2026-05-01T11:00:00.000Z"),
        record("c", "math", None, "2026-05-01T12:00:00.000Z"),
    ]
    log_path.write_bytes(b"".join(encode_record(r) + b"\n" for r in recs))
    services = Services(Settings(admin_key="adm-key"), worker=None)  # type: ignore[arg-type]
    services.attach(audit=AuditLog(log_path, None, tmp_path / "spill"))
    app = http_app(services, [AuditController])
    with TestClient(app) as c:
        yield c


def test_requires_the_admin_key(client):
    """Without (or with a wrong) admin key: 401 in the OpenAI error shape."""
    assert client.get("/admin/audit").status_code == 401
    r = client.get("/admin/audit", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_key"


def test_returns_records_under_data(client):
    """All records, oldest first, each with the full record fields."""
    r = client.get("/admin/audit", headers=ADMIN)
    assert r.status_code == 200
    data = r.json()["data"]
    assert [d["request_id"] for d in data] == ["a", "b", "c"]
    assert data[0]["stop_rule"] == "repetition" and data[0]["policy_version"] == 1


def test_filters(client):
    """domain, stop_rule, since/until and limit narrow the answer."""

    def ids(query: str) -> list[str]:
        return [d["request_id"] for d in client.get("/admin/audit?" + query, headers=ADMIN).json()["data"]]

    assert ids("domain=math") == ["a", "c"]
    assert ids("stop_rule=repetition") == ["a"]
    assert ids("stop_rule=none") == ["b", "c"]
    assert ids("since=2026-05-01T10:30:00Z&until=2026-05-01T11:30:00Z") == ["b"]
    assert ids("limit=1") == ["c"]


def test_bad_parameters_are_400(client):
    """An unparsable time or an out-of-range limit is a 400 naming the parameter."""
    r = client.get("/admin/audit?since=last-tuesday", headers=ADMIN)
    assert r.status_code == 400 and r.json()["error"]["param"] == "since"
    assert client.get("/admin/audit?limit=0", headers=ADMIN).status_code == 400


def test_openapi_schema_documents_the_endpoint(client):
    """The route and its record shape appear in /schema."""
    schema = client.app.openapi_schema.to_schema()
    assert "/admin/audit" in schema["paths"]
