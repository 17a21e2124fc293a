"""The /admin/policies API on two replicas (real uvicorn servers) sharing one real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.app import http_app
from gateway.http.admin_policies import AdminPoliciesController
from gateway.policy.store import PolicyStore
from gateway.redis_server import free_port
from gateway.services import Services
from gateway.settings import Settings
from tests.integration.policy_files import DOMAINS, FILES, eventually, write_policies

ADMIN = "policy-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@dataclass
class Replica:
    url: str
    store: PolicyStore
    server: uvicorn.Server
    task: asyncio.Task[None]


async def start_replica(redis_url: str, policies_dir: Path) -> Replica:
    store = PolicyStore(redis_url, policies_dir, DOMAINS, start_timeout=2.0)
    await store.start()
    services = Services(Settings(admin_key=ADMIN), worker=None)  # type: ignore[arg-type]
    services.attach(policies=store)
    app = http_app(services, [AdminPoliciesController])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done())
    return Replica(f"http://127.0.0.1:{port}", store, server, task)


async def stop_replica(replica: Replica) -> None:
    replica.server.should_exit = True
    await replica.task
    await replica.store.close()


@pytest.fixture()
def policies_dir(tmp_path: Path) -> Path:
    return write_policies(tmp_path)


@pytest.fixture()
async def replicas(redis_url: str, policies_dir: Path) -> AsyncIterator[tuple[Replica, Replica]]:
    a, b = await asyncio.gather(start_replica(redis_url, policies_dir), start_replica(redis_url, policies_dir))
    yield a, b
    await asyncio.gather(stop_replica(a), stop_replica(b))


@pytest.fixture()
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return dict(body["error"])


async def test_every_admin_endpoint_needs_the_admin_key(
    replicas: tuple[Replica, Replica], http: httpx.AsyncClient
) -> None:
    """Without the admin key (or with a wrong one) every endpoint answers 401 in the OpenAI shape."""
    a, _ = replicas
    calls = [
        ("GET", "/admin/policies"),
        ("GET", "/admin/policies/factual"),
        ("PUT", "/admin/policies/factual"),
        ("GET", "/admin/policies/factual/history"),
        ("POST", "/admin/policies/factual/rollback?to=1"),
        ("POST", "/admin/policies/reload"),
    ]
    for method, path in calls:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN}):
            response = await http.request(method, a.url + path, headers=headers, json={"domain": "factual"})
            assert response.status_code == 401, (method, path)
            assert error(response)["code"] == "invalid_admin_key"
    assert a.store.get("factual").version == 1


async def test_get_shows_version_hash_and_document(replicas: tuple[Replica, Replica], http: httpx.AsyncClient) -> None:
    """GET gives {domain, version, hash, policy}; a domain without its own policy shows the default."""
    a, _ = replicas
    got = (await http.get(a.url + "/admin/policies/factual", headers=AUTH)).json()
    assert (got["domain"], got["version"], got["hash"]) == ("factual", 1, a.store.get("factual").hash)
    assert got["policy"] == a.store.get("factual").document() and got["policy"]["max_tokens"] == 256
    math = (await http.get(a.url + "/admin/policies/math", headers=AUTH)).json()
    assert math["inherited_from"] == "default" and math["policy"]["domain"] == "default"
    listing = (await http.get(a.url + "/admin/policies", headers=AUTH)).json()
    assert listing["store"]["state"] == "ok"
    assert [p["domain"] for p in listing["data"]] == ["default", "factual"]


async def test_only_known_domains_in_paths(replicas: tuple[Replica, Replica], http: httpx.AsyncClient) -> None:
    """A domain nobody defined is a 404 unknown_domain, for reads and writes alike."""
    a, _ = replicas
    for method, path in (
        ("GET", "/admin/policies/sports"),
        ("PUT", "/admin/policies/sports"),
        ("GET", "/admin/policies/sports/history"),
    ):
        response = await http.request(method, a.url + path, headers=AUTH, json={"domain": "sports"})
        assert response.status_code == 404 and error(response)["code"] == "unknown_domain"


async def test_put_on_a_is_served_by_b_within_a_second(
    replicas: tuple[Replica, Replica], http: httpx.AsyncClient
) -> None:
    """A PUT on replica A shows on replica B (same version, identical document) within 1 s."""
    a, b = replicas
    doc = (await http.get(b.url + "/admin/policies/factual", headers=AUTH)).json()["policy"]
    doc["max_tokens"] -= 7
    start = time.monotonic()
    put = await http.put(a.url + "/admin/policies/factual", json=doc, headers=AUTH)
    assert put.status_code == 200, put.text
    new = put.json()
    assert new["version"] == 2 and new["policy"]["max_tokens"] == 249
    while True:
        got = (await http.get(b.url + "/admin/policies/factual", headers=AUTH)).json()
        if got["version"] == new["version"] and got["policy"] == new["policy"]:
            break
        assert time.monotonic() - start < 1.0, got
        await asyncio.sleep(0.01)


async def test_put_accepts_yaml(replicas: tuple[Replica, Replica], http: httpx.AsyncClient) -> None:
    """A YAML body with Content-Type application/yaml is a policy document too."""
    a, _ = replicas
    body = "domain: factual\nmax_tokens: 64\nrules:\n  - repetition: {ngram: 3}\n"
    response = await http.put(
        a.url + "/admin/policies/factual", content=body, headers={**AUTH, "Content-Type": "application/yaml"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["policy"]["rules"][0]["repetition"]["ngram"] == 3


async def test_invalid_put_is_422_naming_the_field_and_changes_nothing(
    replicas: tuple[Replica, Replica], http: httpx.AsyncClient
) -> None:
    """An unknown key or bad value is a 422 naming each field (with YAML lines); no replica moves."""
    a, b = replicas
    doc = (await http.get(a.url + "/admin/policies/factual", headers=AUTH)).json()["policy"]
    response = await http.put(a.url + "/admin/policies/factual", json={**doc, "bogus_field_xyz": 1}, headers=AUTH)
    assert response.status_code == 422 and "bogus_field_xyz" in response.text
    err = error(response)
    assert err["code"] == "invalid_document" and err["param"] == "bogus_field_xyz"
    yaml_body = "domain: factual\nmax_tokens: 0\nrules:\n  - repetition: {ngram: x}\n"
    response = await http.put(
        a.url + "/admin/policies/factual", content=yaml_body, headers={**AUTH, "Content-Type": "application/yaml"}
    )
    assert response.status_code == 422
    located = {(p["line"], p["field"]) for p in error(response)["problems"]}
    assert located == {(2, "max_tokens"), (4, "rules[0].repetition.ngram")}
    await asyncio.sleep(0.1)
    for replica in (a, b):
        assert (await http.get(replica.url + "/admin/policies/factual", headers=AUTH)).json()["version"] == 1


@pytest.mark.parametrize(
    ("body", "headers"),
    [(b"{not json", {}), (b"", {}), (b"[1, 2]", {"Content-Type": "application/json"})],
)
async def test_malformed_bodies_are_clean_400s(
    replicas: tuple[Replica, Replica], http: httpx.AsyncClient, body: bytes, headers: dict[str, str]
) -> None:
    """Invalid JSON, an empty body or a non-object is a 400 in the OpenAI shape, not a 500."""
    a, _ = replicas
    response = await http.put(a.url + "/admin/policies/factual", content=body, headers={**AUTH, **headers})
    assert response.status_code == 400, response.text
    assert error(response)["type"] == "invalid_request_error"


async def test_history_and_rollback(replicas: tuple[Replica, Replica], http: httpx.AsyncClient) -> None:
    """History lists versions newest first; rollback (body or ?to=) makes an old document active as a new version."""
    a, b = replicas
    url = a.url + "/admin/policies/factual"
    original = (await http.get(url, headers=AUTH)).json()
    for tokens in (100, 90):
        assert (await http.put(url, json={**original["policy"], "max_tokens": tokens}, headers=AUTH)).status_code == 200
    history = (await http.get(url + "/history", headers=AUTH)).json()["data"]
    assert [(h["version"], h["active"]) for h in history] == [(3, True), (2, False), (1, False)]
    assert history[2]["policy"] == original["policy"] and history[2]["source"] == "seed:files"

    back = await http.post(url + "/rollback", json={"to_version": 1}, headers=AUTH)
    assert back.status_code == 200, back.text
    assert back.json()["version"] == 4 and back.json()["hash"] == original["hash"]
    assert back.json()["policy"] == {**original["policy"], "version": 4}
    await eventually(lambda: b.store.get("factual").version == 4)
    assert (await http.post(url + "/rollback?to=2", headers=AUTH)).json()["policy"]["max_tokens"] == 100

    missing = await http.post(url + "/rollback", json={"to_version": 99}, headers=AUTH)
    assert missing.status_code == 400 and error(missing)["param"] == "to_version"
    assert (await http.post(url + "/rollback", headers=AUTH)).status_code == 400
    assert (await http.post(url + "/rollback", json={"to": 1}, headers=AUTH)).status_code == 400


async def test_reload_rereads_the_files(
    replicas: tuple[Replica, Replica], http: httpx.AsyncClient, policies_dir: Path
) -> None:
    """POST /reload publishes the files that changed (to every replica) and reports the rest unchanged."""
    a, b = replicas
    (policies_dir / "factual.yaml").write_text(FILES["factual.yaml"].replace("256", "128"))
    response = await http.post(a.url + "/admin/policies/reload", headers=AUTH)
    assert response.status_code == 200, response.text
    assert [c["domain"] for c in response.json()["changed"]] == ["factual"]
    assert response.json()["unchanged"] == ["default"]
    await eventually(lambda: b.store.get("factual").policy.max_tokens == 128)
    (policies_dir / "default.yaml").write_text("domain: default\nmax_tokens: 0\n")
    broken = await http.post(a.url + "/admin/policies/reload", headers=AUTH)
    assert broken.status_code == 422 and error(broken)["param"] == "max_tokens"


async def test_writes_fail_with_503_while_redis_is_unreachable(policies_dir: Path, http: httpx.AsyncClient) -> None:
    """With Redis unreachable reads still answer (from the files) and writes are a clear 503."""
    replica = await start_replica(f"redis://127.0.0.1:{free_port()}/0", policies_dir)
    try:
        got = await http.get(replica.url + "/admin/policies/factual", headers=AUTH)
        assert got.status_code == 200 and got.json()["policy"]["max_tokens"] == 256
        listing = (await http.get(replica.url + "/admin/policies", headers=AUTH)).json()
        assert listing["store"]["state"] == "degraded" and "unreachable" in listing["store"]["reason"]
        put = await http.put(replica.url + "/admin/policies/factual", json=got.json()["policy"], headers=AUTH)
        assert put.status_code == 503 and error(put)["code"] == "store_unavailable"
        assert "read-only" in error(put)["message"]
    finally:
        await stop_replica(replica)
