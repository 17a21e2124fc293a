"""Every edge of a real gateway and a real worker against hostile input: 4xx OpenAI error objects, never 5xx,
nothing changed. Bodies (tests/integration/bad_requests.py) go to every JSON endpoint; transport-level attacks
(huge headers, bodies over the cap, slow bodies, broken framing) go to both servers over raw sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.bad_requests import BODIES, YAML_BODIES, Bad
from tests.integration.processes import ADMIN, MODEL, Proc, gateway_env, running

pytestmark = pytest.mark.model

BODY_TIMEOUT_S = 2
ADMIN_AUTH = {"authorization": f"Bearer {ADMIN}"}
GATEWAY_EDGES = [
    ("POST", "/v1/chat/completions", {}),
    ("POST", "/v1/classify", {}),
    ("PUT", "/admin/policies/factual", ADMIN_AUTH),
    ("POST", "/admin/policies/factual/rollback", ADMIN_AUTH),
]
WORKER_EDGES = [("POST", "/v1/chat/completions", {}), ("POST", "/v1/completions", {}), ("POST", "/tokenize", {})]


@pytest.fixture(scope="module")
def servers(tmp_path_factory, redis_server) -> Iterator[tuple[Proc, Proc]]:
    """A `stopgate worker` and a `stopgate serve` streaming from it (one model load), both hardened as shipped."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    tmp = tmp_path_factory.mktemp("edges")
    common = {"STOPGATE_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_S)}
    worker_env = {**gateway_env(tmp, redis_server.url), **common}
    with running(["worker"], worker_env, tmp, "worker", ready="/v1/models") as worker:
        env = gateway_env(tmp, redis_server.url, STOPGATE_WORKER_URL=worker.url, **common)
        with running(["serve"], env, tmp, "gateway") as gateway:
            yield gateway, worker


def _assert_client_error(r: httpx.Response | tuple[int, bytes], label: str, may_succeed: bool = False) -> None:
    status, body = (r.status_code, r.content) if isinstance(r, httpx.Response) else r
    if may_succeed and status < 300:
        return
    assert 400 <= status < 500, f"{label}: {status} {body[:200]!r}"
    import json

    error = json.loads(body)["error"]
    assert error["message"] and "type" in error, f"{label}: {body[:200]!r}"


def _send(proc: Proc, method: str, path: str, bad: Bad, extra: dict[str, str]) -> httpx.Response:
    body = bad.body.replace(b"{model}", MODEL.encode())
    return httpx.request(method, proc.url + path, content=body, headers={**bad.headers, **extra}, timeout=60)


def _versions(gateway: Proc) -> dict[str, int]:
    r = httpx.get(gateway.url + "/admin/policies", headers=ADMIN_AUTH, timeout=10)
    return {row["domain"]: row["version"] for row in r.json()["data"]}


def test_every_gateway_edge_refuses_every_bad_body(servers):
    """Each hostile body at each gateway endpoint is a 4xx error object; the active policies do not change."""
    gateway, _ = servers
    before = _versions(gateway)
    for method, path, extra in GATEWAY_EDGES:
        for bad in BODIES:
            if path.endswith("/rollback") and bad.name in ("empty",):
                continue  # an empty rollback body is a valid shape (the version then comes from ?to=) -> 400 anyway
            response = _send(gateway, method, path, bad, extra)
            _assert_client_error(response, f"{method} {path} {bad.name}", bad.may_succeed)
    for bad in YAML_BODIES:
        _assert_client_error(_send(gateway, "PUT", "/admin/policies/factual", bad, ADMIN_AUTH), f"PUT yaml {bad.name}")
    assert _versions(gateway) == before
    ok = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
        timeout=120,
    )
    assert ok.status_code == 200, ok.text[:300]


def test_every_worker_edge_refuses_every_bad_body(servers):
    """Each hostile body at each `stopgate worker` endpoint is a 4xx error object, and the worker still serves."""
    _, worker = servers
    for method, path, extra in WORKER_EDGES:
        for bad in BODIES:
            _assert_client_error(_send(worker, method, path, bad, extra), f"worker {path} {bad.name}", bad.may_succeed)
    ok = httpx.post(
        worker.url + "/v1/completions", json={"model": MODEL, "prompt": "Hello", "max_tokens": 2}, timeout=120
    )
    assert ok.status_code == 200, ok.text[:300]


def _raw(proc: Proc, data: bytes, *, trickle: float = 0.0, read_s: float = 15.0) -> tuple[int, bytes]:
    """Send raw bytes (optionally the last part slowly) and read the whole response: (status, body)."""
    with socket.create_connection(("127.0.0.1", proc.port), timeout=read_s) as s:
        s.sendall(data)
        if trickle:
            time.sleep(trickle)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


TRANSPORT = {
    "huge header": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n",
    "many headers": b"GET /healthz HTTP/1.1\r\nhost: x\r\n"
    + b"".join(b"x-h%d: v\r\n" % i for i in range(5000))
    + b"\r\n",
    "garbage request line": b"\x16\x03\x01\x02\x00 hello\r\n\r\n",
    "bad content-length": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: -5\r\n\r\n",
    "two content-lengths": b"POST /v1/classify HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
    "bad chunked": b"POST /v1/classify HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "over the body cap": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    b"content-length: 2000000\r\n\r\n" + b" " * 2_000_000,
}


@pytest.mark.parametrize("name", sorted(TRANSPORT))
def test_transport_attacks_are_client_errors_on_both_servers(servers, name):
    """Malformed HTTP, oversized headers and bodies over the cap: a 4xx error object from each server."""
    for proc in servers:
        _assert_client_error(_raw(proc, TRANSPORT[name]), f"{proc.args[0]} {name}")


def test_a_slow_body_is_a_408_not_a_stuck_handler(servers):
    """A body that stops arriving is answered 408 once the body deadline passes; the server keeps serving."""
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
        b"content-type: application/json\r\ncontent-length: 500\r\n\r\n"
    )
    for proc in servers:
        start = time.monotonic()
        status, body = _raw(proc, head + b'{"model": ', read_s=BODY_TIMEOUT_S + 20)
        assert status == 408, (proc.args[0], status, body[:200])
        _assert_client_error((status, body), f"{proc.args[0]} slow body")
        assert time.monotonic() - start < BODY_TIMEOUT_S + 10
        assert httpx.get(proc.url + "/healthz", timeout=10).status_code == 200
