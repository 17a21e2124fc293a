"""The local worker's request features on the real model: top logprobs, thinking, forced end, logit edits, tools."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest

from gateway.errors import UnsupportedParameter
from gateway.worker.local import LocalWorker
from gateway.worker.protocol import ChatMessage, SamplingParams, TokenEvent
from tests.integration.conftest import running_local_worker

pytestmark = pytest.mark.model

QUESTION = [ChatMessage("user", "What is 12 times 7?")]
OTHERS = ("Name three fruits.", "Describe rain in one sentence.")
END = "\n</think>\n\n"


@pytest.fixture(scope="module")
async def worker() -> AsyncIterator[LocalWorker]:
    async with running_local_worker(max_batch=4) as w:
        yield w


async def forced(w: LocalWorker, after: int, max_tokens: int = 40) -> tuple[list[TokenEvent], list[int], int]:
    """A thinking-on generation whose thinking is ended after ``after`` events: events, context ids, appended."""
    stream = await w.generate(QUESTION, SamplingParams(max_tokens=max_tokens, thinking="on"))
    events: list[TokenEvent] = []
    appended = 0
    async for event in stream:
        events.append(event)
        if len(events) == after:
            appended = await w.end_thinking(stream, END)
    return events, stream.token_ids, appended  # type: ignore[attr-defined]


async def plain(w: LocalWorker, prompt: str) -> str:
    stream = await w.generate([ChatMessage("user", prompt)], SamplingParams(max_tokens=24))
    return "".join([e.text async for e in stream])


async def test_top_logprobs_are_the_best_alternatives_in_order(worker: LocalWorker) -> None:
    """top_logprobs=3 gives three alternatives per token, best first; greedy's token is the first."""
    stream = await worker.generate(QUESTION, SamplingParams(max_tokens=6, top_logprobs=3))
    events = [e async for e in stream]
    assert len(events) == 6
    for e in events:
        values = [t.logprob for t in e.top_logprobs]
        assert len(values) == 3 and values == sorted(values, reverse=True)
        assert math.isclose(values[0], e.logprob, abs_tol=1e-5)
        assert e.top_logprobs[0].token == e.text or not e.text


async def test_thinking_on_opens_a_block_the_template_does_not(worker: LocalWorker) -> None:
    """thinking on: SmolLM2's tokens are thinking phase; the prompt ends with the start marker."""
    stream = await worker.generate(QUESTION, SamplingParams(max_tokens=6, thinking="on"))
    events = [e async for e in stream]
    assert {e.phase for e in events} == {"thinking"}
    text = worker.encode_text("<think>\n")
    assert stream.token_ids[stream.prompt_tokens - len(text) : stream.prompt_tokens] == text  # type: ignore[attr-defined]


async def test_end_thinking_continues_right_after_what_was_read_in_the_answer_phase(worker: LocalWorker) -> None:
    """After end_thinking at event 6, events go on from index 6 in the answer phase, the marker right after
    the six tokens read (tokens decoded beyond them are taken back), and the budget covers the marker."""
    events, context, appended = await forced(worker, 6)
    assert appended == len(worker.encode_text(END))
    assert [e.index for e in events] == list(range(len(events)))
    assert {e.phase for e in events[:6]} == {"thinking"} and {e.phase for e in events[6:]} == {"answer"}
    ids = [e.token_id for e in events]
    assert context[-len(ids) - appended :] == [*ids[:6], *worker.encode_text(END), *ids[6:]]
    assert len(events) + appended <= 40


async def test_a_forced_end_gives_the_same_greedy_text_alone_and_batched(worker: LocalWorker) -> None:
    """A forced end of thinking while other rows decode: every stream matches its run alone."""
    alone = [await forced(worker, 5), *[await plain(worker, p) for p in OTHERS]]
    together = await asyncio.gather(forced(worker, 5), *(plain(worker, p) for p in OTHERS))
    assert [e.text for e in together[0][0]] == [e.text for e in alone[0][0]]  # type: ignore[index, union-attr]
    assert list(together[1:]) == alone[1:]


async def test_logit_bias_bans_a_token_and_a_presence_penalty_lowers_repeats(worker: LocalWorker) -> None:
    """logit_bias -100 on greedy's first token removes it; presence_penalty 2 makes a repeated token less likely."""
    repeat = [ChatMessage("user", "Repeat the word cat ten times.")]
    base = [e async for e in await worker.generate(repeat, SamplingParams(max_tokens=12))]
    banned = SamplingParams(max_tokens=1, extra={"logit_bias": {str(base[0].token_id): -100}})
    first = [e async for e in await worker.generate(repeat, banned)]
    assert first[0].token_id != base[0].token_id
    ids = [e.token_id for e in base]
    j = next(i for i, t in enumerate(ids) if t in ids[:i])  # the first repeat
    pen = SamplingParams(max_tokens=12, extra={"presence_penalty": 2.0})
    penalised = [e async for e in await worker.generate(repeat, pen)]
    assert [e.token_id for e in penalised[:j]] == ids[:j]
    assert penalised[j].token_id != ids[j] or penalised[j].logprob < base[j].logprob - 1.0


async def test_tools_on_a_template_without_tools_are_refused_naming_tools(worker: LocalWorker) -> None:
    """SmolLM2's template renders no tools: a 400-class UnsupportedParameter with param 'tools'."""
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    with pytest.raises(UnsupportedParameter) as err:
        await worker.generate(QUESTION, SamplingParams(max_tokens=4, extra={"tools": tools}))
    assert err.value.param == "tools"


async def test_an_agent_turn_with_content_null_generates(worker: LocalWorker) -> None:
    """Assistant tool_calls with content None and a tool result render (folded into text) and generate."""
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    turn = [
        ChatMessage("user", "What is the weather in Paris?"),
        ChatMessage("assistant", None, tool_calls=(call,)),
        ChatMessage("tool", "18 C and sunny", tool_call_id="c1"),
    ]
    stream = await worker.generate(turn, SamplingParams(max_tokens=4))
    assert len([e async for e in stream]) >= 1
