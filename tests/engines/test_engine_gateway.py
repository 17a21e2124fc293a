"""The gateway in front of a real engine, through the openai SDK: exact usage, logprobs, streams, tools."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from gateway.bench.server import Gateway, serve
from gateway.settings import DEFAULT_MODEL, Settings
from tests.engines.conftest import KIND
from tests.engines.launch import Engine

QUESTION = [{"role": "user", "content": "What is 12 times 7?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


@pytest.fixture(scope="module")
def gateway(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`stopgate serve` with the engine as its remote worker."""
    settings = Settings(model=DEFAULT_MODEL, device="cpu", data_dir=Path(".stopgate"))
    log = tmp_path_factory.mktemp("gw") / "gateway.log"
    with serve(settings, log, {"STOPGATE_WORKER_URL": engine.url}) as gw:
        yield gw


def client(gw: Gateway) -> OpenAI:
    return OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def off(gw: Gateway) -> dict[str, str]:
    return {"x-stopgate-admin-key": gw.admin_key, "x-stopgate-policy": "off"}


def direct(engine: Engine, **body: object) -> dict:
    model = httpx.get(engine.url + "/v1/models", timeout=10).json()["data"][0]["id"]
    payload = {"model": model, "messages": QUESTION, "max_tokens": 24, "temperature": 0, **body}
    if KIND == "llamacpp":
        payload["repeat_penalty"] = 1.0  # what the remote worker sends it (its default 1.1 is not greedy)
    return httpx.post(engine.url + "/v1/chat/completions", json=payload, timeout=300).json()


def test_usage_and_greedy_text_equal_the_engine_direct(gateway: Gateway, engine: Engine) -> None:
    """Non-stream, rules off: prompt and completion tokens and the text are the engine's own."""
    c = client(gateway)
    model = c.models.list().data[0].id
    r = c.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=24, temperature=0, extra_headers=off(gateway)
    )
    d = direct(engine)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (
        d["usage"]["prompt_tokens"],
        d["usage"]["completion_tokens"],
    )
    assert r.choices[0].message.content == d["choices"][0]["message"]["content"]


def test_stream_with_usage_and_logprobs_counts_every_token(gateway: Gateway, engine: Engine) -> None:
    """Streamed with include_usage and top_logprobs=2: one logprob entry per completion token, usage = engine's."""
    c = client(gateway)
    model = c.models.list().data[0].id
    entries, usage, text = 0, None, ""
    for ch in c.chat.completions.create(
        model=model,
        messages=QUESTION,
        max_tokens=24,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=off(gateway),
    ):
        for choice in ch.choices:
            text += choice.delta.content or ""
            if choice.logprobs and choice.logprobs.content:
                entries += len(choice.logprobs.content)
                assert all(len(e.top_logprobs) == 2 for e in choice.logprobs.content)
        usage = ch.usage or usage
    d = direct(engine)
    assert usage is not None and entries == usage.completion_tokens
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        d["usage"]["prompt_tokens"],
        d["usage"]["completion_tokens"],
    )
    assert text == d["choices"][0]["message"]["content"]


def test_stream_helper_with_shipped_policies(gateway: Gateway) -> None:
    """The SDK's stream helper through the gateway with the shipped policies gives a finished answer."""
    c = client(gateway)
    model = c.models.list().data[0].id
    # max_tokens above what the policy keeps: the SDK's helper raises on finish_reason "length".
    with c.chat.completions.stream(model=model, max_tokens=400, temperature=0, messages=QUESTION) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    assert final.choices[0].message.content and final.choices[0].finish_reason in ("stop", "length")


@pytest.mark.skipif(KIND != "vllm", reason="needs vLLM's tool parser")
def test_agent_round_trip_with_tools(gateway: Gateway) -> None:
    """tools -> tool_calls -> tool result -> answer, through the gateway with vLLM's hermes parser behind it."""
    c = client(gateway)
    model = c.models.list().data[0].id
    ask = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
    forced = {"type": "function", "function": {"name": "get_weather"}}
    r = c.chat.completions.create(
        model=model, messages=ask, tools=TOOLS, tool_choice=forced, max_tokens=48, temperature=0
    )
    calls = r.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    json.loads(calls[0].function.arguments)
    turn = [
        *ask,
        {"role": "assistant", "content": None, "tool_calls": [c_.model_dump() for c_ in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "18 C and sunny"},
    ]
    r2 = c.chat.completions.create(model=model, messages=turn, tools=TOOLS, max_tokens=48, temperature=0)
    assert r2.choices[0].message.content or r2.choices[0].message.tool_calls
