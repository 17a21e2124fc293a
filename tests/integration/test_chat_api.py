"""The OpenAI-compatible chat API, driven by the official SDK and httpx against a real server."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from tests.integration.conftest import ADMIN_KEY, MODEL, RunningGateway, chat_body

pytestmark = pytest.mark.model


def sse_events(gw: RunningGateway, body: dict, headers: dict | None = None) -> tuple[httpx.Headers, list[str]]:
    with httpx.stream(
        "POST", gw.url + "/v1/chat/completions", json={**body, "stream": True}, headers=headers or {}, timeout=120
    ) as r:
        assert r.status_code == 200, r.read()
        return r.headers, [line for line in r.iter_lines() if line]


def test_sdk_streams_with_usage_and_stopgate_object(gateway: RunningGateway) -> None:
    """The SDK streams content, one finish_reason, a usage chunk, and the stopgate object."""
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused")
    text, finishes, usage, ext = "", [], None, None
    for ch in client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a colour."}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=16,
        temperature=0,
    ):
        if ch.usage is not None:
            usage = ch.usage
            assert ch.choices == []
        for c in ch.choices:
            text += c.delta.content or ""
            if c.finish_reason:
                finishes.append(c.finish_reason)
                ext = (ch.model_extra or {})["stopgate"]
    assert text.strip()
    assert finishes in (["stop"], ["length"])
    assert usage is not None and usage.completion_tokens == ext["completion_tokens"]
    assert {"domain", "domain_confidence", "policy", "policy_version", "stop_rule", "max_tokens"} <= ext.keys()


def test_sdk_non_stream_response(gateway: RunningGateway) -> None:
    """A non-stream request returns one message, usage, and the stopgate object."""
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused")
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
    )
    assert resp.choices[0].message.content
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert 0 < resp.usage.completion_tokens <= 8
    assert resp.model_extra["stopgate"]["completion_tokens"] == resp.usage.completion_tokens


def test_sse_framing_headers_and_done(gateway: RunningGateway) -> None:
    """Every SSE line is a data frame of JSON, the stream ends with [DONE], headers name the route."""
    headers, lines = sse_events(gateway, chat_body("hi", max_tokens=6))
    assert headers["content-type"].startswith("text/event-stream")
    for h in ("x-stopgate-request-id", "x-stopgate-domain", "x-stopgate-policy"):
        assert headers[h]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]] in (
        ["stop"],
        ["length"],
    )


def test_max_tokens_is_a_hard_budget(gateway: RunningGateway) -> None:
    """max_tokens (and max_completion_tokens) bound the completion and end it with 'length'."""
    body = gateway.chat("Write a long story about a cat.", max_completion_tokens=5).json()
    assert body["usage"]["completion_tokens"] == 5
    assert body["choices"][0]["finish_reason"] == "length"


def test_stop_sequence_ends_the_answer_without_sending_it(gateway: RunningGateway) -> None:
    """A client stop string ends the stream with 'stop' and is not part of the content."""
    prompt = "Count from one to ten in words."
    full = gateway.chat(prompt, max_tokens=40).json()
    text = full["choices"][0]["message"]["content"]
    words = text.split()
    assert len(words) > 3
    stop = words[2]
    cut = gateway.chat(prompt, max_tokens=40, stop=[stop]).json()
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert stop not in cut["choices"][0]["message"]["content"]
    assert text.startswith(cut["choices"][0]["message"]["content"])


BAD_BODIES = {
    "invalid-json": b"{not json",
    "body-not-object": b"[1, 2]",
    "messages-empty": json.dumps({"model": MODEL, "messages": []}).encode(),
    "messages-not-list": json.dumps({"model": MODEL, "messages": "hello"}).encode(),
    "messages-missing": json.dumps({"model": MODEL}).encode(),
    "content-null": json.dumps({"model": MODEL, "messages": [{"role": "user", "content": None}]}).encode(),
    "max-tokens-negative": json.dumps(
        {"model": MODEL, "max_tokens": -5, "messages": [{"role": "user", "content": "x"}]}
    ).encode(),
    "max-tokens-float": json.dumps(
        {"model": MODEL, "max_tokens": 2.5, "messages": [{"role": "user", "content": "x"}]}
    ).encode(),
    "temperature-string": json.dumps(
        {"model": MODEL, "temperature": "hot", "messages": [{"role": "user", "content": "x"}]}
    ).encode(),
    "stop-numbers": json.dumps(
        {"model": MODEL, "stop": [1, 2], "messages": [{"role": "user", "content": "x"}]}
    ).encode(),
    "role-unknown": json.dumps({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}).encode(),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_requests_get_an_openai_error_object(gateway: RunningGateway, name: str) -> None:
    """Malformed requests are 4xx with an OpenAI error object, never a 5xx."""
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=BAD_BODIES[name],
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert 400 <= r.status_code < 500, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error"


def test_unknown_model_is_404_model_not_found(gateway: RunningGateway) -> None:
    """An unknown model answers 404 with code model_not_found."""
    r = gateway.chat("x", model="gpt-17", timeout=30)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_models_lists_the_served_model(gateway: RunningGateway) -> None:
    """GET /v1/models lists the served model id."""
    assert [m["id"] for m in httpx.get(gateway.url + "/v1/models").json()["data"]] == [MODEL]


def test_client_disconnect_stops_generation(gateway: RunningGateway) -> None:
    """After the client goes away, the worker's token counter stops growing within a step or two."""
    body = chat_body("Write a very long story about a lighthouse.", stream=True, max_tokens=400)
    # No stopping rule may end the answer first: only the disconnect can stop it.
    override = {"x-stopgate-admin-key": ADMIN_KEY, "x-stopgate-policy": "off"}
    disconnects = gateway.metric("stopgate_client_disconnects_total")
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=override, timeout=120) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i >= 6:
                break
    time.sleep(1.0)  # the disconnect reaches the server and the row leaves the batch
    before = gateway.metric("stopgate_worker_tokens_generated")
    time.sleep(2.0)
    after = gateway.metric("stopgate_worker_tokens_generated")
    assert after == before
    assert gateway.metric("stopgate_active_streams") == 0
    assert gateway.metric("stopgate_client_disconnects_total") == disconnects + 1


async def test_concurrent_greedy_streams_match_sequential(gateway: RunningGateway) -> None:
    """Four concurrent greedy streams, batched together, give the same text as one at a time."""
    prompts = [
        "Name three fruits.",
        "What is the capital of France?",
        "Describe rain in one sentence.",
        "Give me a word that rhymes with cat.",
    ]

    async def one(client: httpx.AsyncClient, prompt: str) -> str:
        r = await client.post("/v1/chat/completions", json=chat_body(prompt, max_tokens=24))
        return r.json()["choices"][0]["message"]["content"]

    async with httpx.AsyncClient(base_url=gateway.url, timeout=300) as client:
        alone = [await one(client, p) for p in prompts]
        together = await asyncio.gather(*(one(client, p) for p in prompts))
    assert list(together) == alone


def test_prompt_longer_than_the_context_is_a_400(gateway: RunningGateway) -> None:
    """A prompt that does not fit the model's context is refused with context_length_exceeded, not generated."""
    r = gateway.chat("word " * 9000, max_tokens=4, timeout=60)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"


def test_usage_counts_the_prompt_tokens_the_prefix_cache_held(gateway: RunningGateway) -> None:
    """Two different questions share the template's head: the second's usage says those prompt tokens were cached."""
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused")
    for question in ("Name a river.", "Name a mountain."):
        resp = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": question}], max_tokens=4, temperature=0
        )
    details = resp.usage.prompt_tokens_details
    assert details is not None and 16 <= (details.cached_tokens or 0) < resp.usage.prompt_tokens
