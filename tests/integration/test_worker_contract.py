"""One contract suite for every ``Worker``: the in-process model and a remote ``stopgate worker``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import RequestError
from gateway.worker.local import LocalWorker
from gateway.worker.protocol import ChatMessage, SamplingParams, Worker
from gateway.worker.remote import RemoteWorker

pytestmark = pytest.mark.model

QUESTION = [ChatMessage("user", "What is the capital of France?")]


@pytest.fixture(params=["local", "remote"])
async def worker(request: pytest.FixtureRequest) -> AsyncIterator[Worker]:
    w: Worker
    if request.param == "local":
        w = LocalWorker("smollm2-135m-instruct", "cpu", Path(".stopgate"))
    else:
        w = RemoteWorker([request.getfixturevalue("worker_server")], model="smollm2-135m-instruct")
    await w.start()
    yield w
    await w.close()


async def collect(w: Worker, max_tokens: int) -> tuple[str, list[float], str | None]:
    stream = await w.generate(QUESTION, SamplingParams(max_tokens=max_tokens))
    events = [e async for e in stream]
    return "".join(e.text for e in events), [e.logprob for e in events], stream.finish_reason


async def test_stream_yields_tokens_with_logprobs_up_to_the_budget(worker: Worker) -> None:
    """A generation yields one event per token, each with text and a logprob <= 0, and ends with 'length'."""
    text, logprobs, finish = await collect(worker, 6)
    assert text.strip()
    assert len(logprobs) == 6 and all(lp <= 0 for lp in logprobs)
    assert finish == "length"


async def test_greedy_generation_is_deterministic(worker: Worker) -> None:
    """Two greedy runs of the same prompt give the same text."""
    assert (await collect(worker, 8))[0] == (await collect(worker, 8))[0]


async def test_cancel_ends_the_stream(worker: Worker) -> None:
    """Cancelling mid-stream ends iteration promptly, long before the budget."""
    stream = await worker.generate(
        [ChatMessage("user", "Write a long poem about the sea.")], SamplingParams(max_tokens=300)
    )
    seen = 0
    t = time.monotonic()
    async for _ in stream:
        seen += 1
        if seen == 3:
            stream.cancel()
    assert seen <= 5
    assert time.monotonic() - t < 20
    await asyncio.sleep(0.5)
    assert worker.active == 0


async def test_probe_continues_the_running_answer(worker: Worker) -> None:
    """A probe returns a short greedy continuation of prompt + answer so far + suffix, with a confidence."""
    stream = await worker.generate(QUESTION, SamplingParams(max_tokens=12))
    async for _ in stream:
        pass
    result = await worker.probe(stream, "\nFinal answer:", 4)
    assert 0 < result.tokens <= 4
    assert 0.0 < result.confidence <= 1.0
    assert result.text


async def test_top_logprobs_give_the_best_alternatives(worker: Worker) -> None:
    """top_logprobs=2: two alternatives per token, best first."""
    stream = await worker.generate(QUESTION, SamplingParams(max_tokens=4, top_logprobs=2))
    events = [e async for e in stream]
    assert events and all(len(e.top_logprobs) == 2 for e in events)
    assert all(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob for e in events)


async def test_thinking_on_then_end_thinking_gives_an_answer_phase(worker: Worker) -> None:
    """thinking on: events are thinking; after end_thinking they are answer and the marker is counted."""
    stream = await worker.generate(QUESTION, SamplingParams(max_tokens=24, thinking="on"))
    events = []
    appended = 0
    async for e in stream:
        events.append(e)
        if len(events) == 4:
            appended = await worker.end_thinking(stream, "\n</think>\n\n")
    assert {e.phase for e in events[:4]} == {"thinking"}
    assert appended > 0 and len(events) > 4 and {e.phase for e in events[4:]} == {"answer"}


async def test_tools_the_model_cannot_take_are_a_400_naming_tools(worker: Worker) -> None:
    """tools for a model whose template has no tool support: a request error with param 'tools'."""
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    with pytest.raises(RequestError) as err:
        stream = await worker.generate(QUESTION, SamplingParams(max_tokens=4, extra={"tools": tools}))
        [e async for e in stream]
    assert err.value.param == "tools"
