"""RemoteWorker against a real `stopgate worker`: thinking phases, forced end of thinking, top logprobs,
usage, and the worker's 400 for what it cannot do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.errors import RequestError
from gateway.worker.protocol import ChatMessage, SamplingParams
from gateway.worker.remote import RemoteWorker

pytestmark = pytest.mark.model

QUESTION = [ChatMessage("user", "What is 2 + 3?")]


@pytest.fixture
async def remote(worker_server: str) -> AsyncIterator[RemoteWorker]:
    w = RemoteWorker([worker_server], model="smollm2-135m-instruct")
    await w.start()
    yield w
    await w.close()


async def test_engine_is_discovered_as_stopgate_with_its_context(remote: RemoteWorker) -> None:
    """Discovery finds /healthz, names the engine and takes the model's context length."""
    profile = remote.upstreams[0].profile
    assert profile is not None and profile.kind == "stopgate" and profile.token_ids
    assert remote.context_length == 8192 or remote.context_length > 0


async def test_thinking_on_streams_thinking_then_a_forced_end_gives_answer(remote: RemoteWorker) -> None:
    """thinking=on: events are thinking (no marker text); end_thinking continues the same stream as answer."""
    stream = await remote.generate(QUESTION, SamplingParams(max_tokens=24, thinking="on"))
    events = []
    appended = 0
    async for event in stream:
        events.append(event)
        if len(events) == 2:
            assert all(e.phase == "thinking" for e in events)
            appended = await remote.end_thinking(stream, "</think>")
    assert appended >= 1
    answer = [e for e in events[2:] if e.phase == "answer"]
    assert answer and "".join(e.text for e in answer).strip()
    assert all("<think>" not in e.text and "</think>" not in e.text for e in events)
    assert len(events) + appended <= 24
    assert [e.index for e in events] == list(range(len(events)))
    assert stream.prompt_tokens > 0
    await stream_done(remote)


async def stream_done(remote: RemoteWorker) -> None:
    for _ in range(50):
        if remote.active == 0:
            return
        import asyncio

        await asyncio.sleep(0.1)
    raise AssertionError("the remote request was not released")


async def test_thinking_off_and_model_give_answer_tokens(remote: RemoteWorker) -> None:
    """Without thinking every token is answer and usage's prompt tokens arrive."""
    stream = await remote.generate(QUESTION, SamplingParams(max_tokens=5, thinking="off"))
    events = [e async for e in stream]
    assert len(events) == 5 and all(e.phase == "answer" for e in events)
    assert stream.prompt_tokens > 0 and stream.engine_completion_tokens == 5


async def test_top_logprobs_come_back_per_token(remote: RemoteWorker) -> None:
    """top_logprobs=2: each event carries two alternatives, the chosen token's logprob among the best."""
    stream = await remote.generate(QUESTION, SamplingParams(max_tokens=4, top_logprobs=2))
    events = [e async for e in stream]
    assert len(events) == 4
    for e in events:
        assert len(e.top_logprobs) == 2
        assert e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob
        assert e.logprob <= e.top_logprobs[0].logprob + 1e-4


async def test_what_the_local_worker_cannot_do_is_its_400_naming_the_param(remote: RemoteWorker) -> None:
    """A forced tool_choice is refused by the worker; the remote worker raises it as a RequestError with param."""
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    extra = {"tools": tools, "tool_choice": {"type": "function", "function": {"name": "add"}}}
    with pytest.raises(RequestError) as info:
        await remote.generate(QUESTION, SamplingParams(max_tokens=4, extra=extra))
    assert info.value.param in ("tools", "tool_choice")


async def test_cached_prompt_tokens_come_through_from_the_engines_usage(remote: RemoteWorker) -> None:
    """A stopgate worker reports the prompt tokens its prefix cache held; the remote stream carries them."""
    for question in ("Name a river.", "Name a mountain."):
        stream = await remote.generate([ChatMessage("user", question)], SamplingParams(max_tokens=3))
        _ = [e async for e in stream]
    assert 16 <= stream.cached_tokens < stream.prompt_tokens
