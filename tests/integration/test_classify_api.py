"""``POST /v1/classify`` and ``/admin/domains`` over HTTP, with the real classifier and error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from gateway.app import http_app
from gateway.classify import Classifier
from gateway.http.classify import MAX_TEXT_CHARS, AdminDomainsController, ClassifyController
from gateway.services import Services
from gateway.settings import Settings

API_KEY = "classify-test-key"
ADMIN_KEY = "classify-admin-key"
AUTH = {"authorization": f"Bearer {API_KEY}"}
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}

DOMAINS = {
    "math": [
        "what is 12 times 7",
        "solve 3x + 4 = 19",
        "calculate 15 percent of 300",
        "Sam has 14 apples and gives away 5. How many are left?",
    ],
    "support": [
        "what is my checking account balance",
        "my credit card was stolen",
        "transfer $50 to my savings account",
        "why was my card declined",
    ],
    "general": [
        "book a table for two tonight",
        "what's the weather tomorrow",
        "play some jazz music",
        "how long do i boil pasta",
    ],
}


def write_domain(directory: Path, name: str, examples: list[str]) -> None:
    body = "\n".join(f'  - "{e}"' for e in examples)
    (directory / f"{name}.yaml").write_text(f"name: {name}\ndescription: {name}\nexamples:\n{body}\n")


def build_app(services: Services) -> Litestar:
    return http_app(services, [ClassifyController, AdminDomainsController])


@pytest.fixture(scope="module")
def domains_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("domains")
    for name, examples in DOMAINS.items():
        write_domain(directory, name, examples)
    return directory


@pytest.fixture(scope="module")
def services(domains_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Services:
    data_dir = tmp_path_factory.mktemp("data")
    settings = Settings(domains_dir=domains_dir, data_dir=data_dir, api_keys=(API_KEY,), admin_key=ADMIN_KEY)
    services = Services(settings, worker=None)  # type: ignore[arg-type]
    services.attach(classifier=Classifier.from_settings(settings))
    return services


@pytest.fixture()
async def client(services: Services) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=build_app(services)) as c:
        yield c


async def test_classify_shape(client: AsyncTestClient[Litestar]) -> None:
    """A text gets exactly {domain, confidence, scores} with a score for every domain."""
    resp = await client.post("/v1/classify", json={"text": "what is 8 times 9"}, headers=AUTH)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"domain", "confidence", "scores"}
    assert body["domain"] == "math" and set(body["scores"]) == set(DOMAINS)
    assert 0.0 < body["confidence"] <= 1.0


@pytest.mark.parametrize(
    "content",
    [
        b"{}",
        b'{"text": null}',
        b'{"text": 42}',
        b'{"text": ["a"]}',
        b'{"text": {"a": 1}}',
        b'{"text": ""}',
        b'{"text": "   \\n"}',
        b"",
        b"not json",
        b"[1, 2]",
        b'"just a string"',
        b"null",
    ],
)
async def test_bad_input_is_400_naming_text(client: AsyncTestClient[Litestar], content: bytes) -> None:
    """Missing, null, non-string, blank text and non-object bodies are OpenAI-shaped 400s."""
    resp = await client.post("/v1/classify", content=content, headers={**AUTH, "content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == "text" and error["type"] == "invalid_request_error" and error["message"]


async def test_huge_text_is_truncated_not_refused(client: AsyncTestClient[Litestar]) -> None:
    """Half a megabyte of text is classified from its first MAX_TEXT_CHARS characters."""
    text = "what is 17 times 23? " * 25_000
    assert len(text) > 100 * MAX_TEXT_CHARS
    resp = await client.post("/v1/classify", json={"text": text}, headers=AUTH)
    assert resp.status_code == 200 and resp.json()["domain"] == "math"


async def test_body_over_the_limit_is_a_client_error(client: AsyncTestClient[Litestar]) -> None:
    """A body above the gateway's size limit is refused with a 4xx, never a 5xx."""
    resp = await client.post("/v1/classify", json={"text": "x" * 1_100_000}, headers=AUTH)
    assert 400 <= resp.status_code < 500


async def test_api_key_is_required(client: AsyncTestClient[Litestar]) -> None:
    """/v1/classify sits behind the API keys like every /v1 route."""
    resp = await client.post("/v1/classify", json={"text": "hello"})
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"


async def test_admin_routes_need_the_admin_key(client: AsyncTestClient[Litestar]) -> None:
    """Listing and reloading domains answer 401 without the admin key (an API key is not enough)."""
    for method, path in (("GET", "/admin/domains"), ("POST", "/admin/domains/reload")):
        for headers in ({}, AUTH):
            resp = await client.request(method, path, headers=headers)
            assert resp.status_code == 401, (method, path)
            assert resp.json()["error"]["code"] == "invalid_admin_key"


async def test_list_domains(client: AsyncTestClient[Litestar]) -> None:
    """The admin view lists each domain with its example count and file."""
    resp = await client.get("/admin/domains", headers=ADMIN)
    assert resp.status_code == 200
    body = resp.json()
    assert {d["name"]: d["examples"] for d in body["data"]} == {n: len(e) for n, e in DOMAINS.items()}
    assert body["fallback"] == "general" and len(body["digest"]) == 64


async def test_reload_adds_a_domain_and_refuses_a_bad_file(
    client: AsyncTestClient[Litestar], domains_dir: Path
) -> None:
    """A new file takes effect on reload; a broken one is a 422 naming file, line and field, old set kept."""
    write_domain(domains_dir, "small_talk", ["hi there", "how are you", "thanks a lot", "goodbye friend"])
    resp = await client.post("/admin/domains/reload", headers=ADMIN)
    assert resp.status_code == 200
    assert {d["name"] for d in resp.json()["data"]} == {*DOMAINS, "small_talk"}
    hello = await client.post("/v1/classify", json={"text": "hello, how are you doing"}, headers=AUTH)
    assert hello.json()["domain"] == "small_talk"

    (domains_dir / "zz_bad.yaml").write_text("name: zz_bad\ndescription: x\nexamples:\n  - ok\n  - 7\n")
    try:
        resp = await client.post("/admin/domains/reload", headers=ADMIN)
        assert resp.status_code == 422
        error: dict[str, Any] = resp.json()["error"]
        [problem] = error["problems"]
        assert problem["file"].endswith("zz_bad.yaml") and problem["line"] == 5
        assert problem["field"] == "examples[1]"
        still = await client.post("/v1/classify", json={"text": "hello, how are you doing"}, headers=AUTH)
        assert still.json()["domain"] == "small_talk" and "small_talk" in still.json()["scores"]
    finally:
        (domains_dir / "zz_bad.yaml").unlink()
        (domains_dir / "small_talk.yaml").unlink()
        assert (await client.post("/admin/domains/reload", headers=ADMIN)).status_code == 200


async def test_not_ready_without_a_classifier(services: Services) -> None:
    """With no classifier loaded the endpoint is a 503 not_ready, not a crash."""
    bare = Services(services.settings, worker=None)  # type: ignore[arg-type]
    async with AsyncTestClient(app=build_app(bare)) as c:
        resp = await c.post("/v1/classify", json={"text": "hello"}, headers=AUTH)
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "not_ready"
