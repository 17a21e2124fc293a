"""The worker contract suite (tests/integration/test_worker_contract.py) against a real engine.

The same tests, with ``worker`` a ``RemoteWorker`` in front of the engine; where an engine cannot
do what the suite asks of the embedded model, the test is replaced by the engine's stated
behaviour (named below). Plus: cancelling really stops the engine's generation.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.worker.protocol import ChatMessage, SamplingParams, Worker
from gateway.worker.remote import RemoteWorker
from tests.engines.conftest import KIND
from tests.engines.launch import Engine
from tests.integration.test_worker_contract import *  # noqa: F403 - the shared suite, collected here again
from tests.integration.test_worker_contract import QUESTION

# The embedded model's template has no tools: the local worker refuses them, an engine takes them
# (vLLM with its tool parser; llama.cpp's server ignores them). Replaced by test_tools_reach_the_engine.
del test_tools_the_model_cannot_take_are_a_400_naming_tools  # noqa: F821
if KIND == "llamacpp":
    # llama.cpp's server has no continue_final_message: probes are off (replaced below).
    del test_probe_continues_the_running_answer  # noqa: F821


@pytest.fixture
async def worker(engine: Engine) -> AsyncIterator[Worker]:
    w = RemoteWorker([engine.url], model="smollm2-135m-instruct")
    await w.start()
    assert w.ready, f"the remote worker did not find the engine at {engine.url}"
    yield w
    await w.close()


async def test_engine_is_discovered(worker: RemoteWorker) -> None:
    """Discovery names the engine and finds a health endpoint it has."""
    profile = worker.upstreams[0].profile
    assert profile is not None and profile.kind == KIND
    assert profile.health_path == ("/health" if KIND == "vllm" else "/v1/models")


async def test_tools_reach_the_engine(worker: RemoteWorker) -> None:
    """tools / tool_choice are forwarded as sent: the engine answers 200 (text or tool calls), never our 400."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    stream = await worker.generate(
        QUESTION, SamplingParams(max_tokens=8, extra={"tools": tools, "tool_choice": "auto"})
    )
    events = [e async for e in stream]
    assert events and stream.finish_reason in ("stop", "length", "tool_calls")


@pytest.mark.skipif(KIND != "llamacpp", reason="llama.cpp only: its probes are off")
async def test_probes_are_off_with_confidence_zero(worker: RemoteWorker) -> None:
    """Without continue_final_message a probe answers nothing with confidence 0 (no probe rule can fire)."""
    stream = await worker.generate(QUESTION, SamplingParams(max_tokens=4))
    [e async for e in stream]
    result = await worker.probe(stream, "\nFinal answer:", 4)
    assert result.tokens == 0 and result.confidence == 0.0


async def test_exact_counts_equal_the_engine_usage(worker: RemoteWorker, engine: Engine) -> None:
    """One event per completion token and the prompt tokens, both as the engine counts them itself."""
    stream = await worker.generate(QUESTION, SamplingParams(max_tokens=20))
    events = [e async for e in stream]
    async with httpx.AsyncClient(timeout=120) as client:
        body = {
            "model": worker.model_id,
            "messages": [{"role": "user", "content": QUESTION[0].content}],
            "max_tokens": 20,
            "temperature": 0,
        }
        if KIND == "llamacpp":
            body["repeat_penalty"] = 1.0  # as the remote worker sends it (its default 1.1 is not greedy)
        direct = (await client.post(engine.url + "/v1/chat/completions", json=body)).json()
    assert stream.prompt_tokens == direct["usage"]["prompt_tokens"]
    assert len(events) == direct["usage"]["completion_tokens"]
    assert "".join(e.text for e in events) == direct["choices"][0]["message"]["content"]


async def test_concurrent_requests_all_complete(worker: RemoteWorker) -> None:
    """Three requests at once: none is killed by another (llama.cpp's are queued by the worker)."""

    async def one(i: int) -> int:
        stream = await worker.generate([ChatMessage("user", f"Count to {i + 3}.")], SamplingParams(max_tokens=10))
        return len([e async for e in stream])

    assert await asyncio.gather(*(one(i) for i in range(3))) == [10, 10, 10]


def _generation_tokens(metrics: str) -> float:
    return sum(
        float(v) for v in re.findall(r"^vllm:generation_tokens_total(?:\{[^}]*\})?\s+([0-9.eE+]+)", metrics, re.M)
    )


async def _cancel_at_three_of_300(worker: RemoteWorker) -> None:
    """A 300-token request read for three tokens, then cancelled."""
    stream = await worker.generate(
        [ChatMessage("user", "Write a long poem about the sea.")], SamplingParams(max_tokens=300)
    )
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 3:
            stream.cancel()


@pytest.mark.skipif(KIND != "vllm", reason="needs vLLM's /metrics")
async def test_cancel_stops_the_engine_generating(worker: RemoteWorker, engine: Engine) -> None:
    """After a cancel at 3 tokens of 300, the engine's own generation counter stops within a few tokens."""
    async with httpx.AsyncClient(timeout=10) as client:
        before = _generation_tokens((await client.get(engine.url + "/metrics")).text)
        await _cancel_at_three_of_300(worker)
        await asyncio.sleep(3.0)
        after = _generation_tokens((await client.get(engine.url + "/metrics")).text)
    assert after - before < 40, f"the engine generated {after - before} tokens for a request cancelled at 3"


@pytest.mark.skipif(KIND != "llamacpp", reason="reads llama.cpp's own timing lines")
async def test_cancel_stops_llamacpp_generating(worker: RemoteWorker, engine: Engine) -> None:
    """After a cancel at 3 tokens of 300, llama.cpp's own eval count stays within a few tokens (its log)."""
    if not engine.log.is_file():
        pytest.skip("the engine's log is not at hand (STOPGATE_ENGINE_LOG)")
    start = engine.log.stat().st_size
    await _cancel_at_three_of_300(worker)
    await asyncio.sleep(2.0)
    # One request at a time: this one runs only once the cancelled generation has ended.
    after = await worker.generate([ChatMessage("user", "Say hi.")], SamplingParams(max_tokens=2))
    assert len([e async for e in after]) == 2
    await asyncio.sleep(1.0)
    with engine.log.open("rb") as fh:
        fh.seek(start)
        appended = fh.read().decode("utf-8", "replace")
    runs = [int(n) for n in re.findall(r"\beval time =.*?/\s*(\d+) runs", appended)]
    assert runs, "llama.cpp printed no timing line for the requests"
    assert max(runs) < 40, f"llama.cpp decoded {max(runs)} tokens in one request after a cancel at 3"
