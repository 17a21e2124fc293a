"""The prefix cache on the real model: prompts sharing the template's head, a conversation's history and a
probe's thinking are not computed again, and greedy text and probes are what a worker without it gives."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from gateway.worker.local import LocalWorker
from gateway.worker.protocol import ChatMessage, SamplingParams
from tests.integration.conftest import running_local_worker

pytestmark = pytest.mark.model

PROMPTS = ("Name three fruits.", "What is the capital of France?", "Describe rain in one sentence.")


@pytest.fixture(scope="module")
async def cached() -> AsyncIterator[LocalWorker]:
    async with running_local_worker(max_batch=4) as w:
        yield w


@pytest.fixture(scope="module")
async def uncached() -> AsyncIterator[LocalWorker]:
    async with running_local_worker(max_batch=4, prefix_cache_mb=0) as w:
        yield w


async def greedy(w: LocalWorker, messages: list[ChatMessage], max_tokens: int = 20) -> str:
    stream = await w.generate(messages, SamplingParams(max_tokens=max_tokens))
    return "".join([e.text async for e in stream])


async def test_prompts_sharing_the_template_head_reuse_it_and_answer_the_same(
    cached: LocalWorker, uncached: LocalWorker
) -> None:
    """After the first prompt, each one takes the system turn's tokens from the cache; greedy text is unchanged."""
    before = cached.prompt_tokens_reused
    for prompt in PROMPTS:
        assert await greedy(cached, [ChatMessage("user", prompt)]) == await greedy(
            uncached, [ChatMessage("user", prompt)]
        )
    rendered = [cached.encode_chat([ChatMessage("user", p)]) for p in PROMPTS]
    head = next(i for i, ids in enumerate(zip(*rendered, strict=False)) if len(set(ids)) > 1)
    assert head >= 16  # the template's system turn
    assert cached.prompt_tokens_reused - before >= (len(PROMPTS) - 1) * head
    assert uncached.prompt_tokens_reused == 0


async def test_a_conversations_next_turn_reuses_its_history(cached: LocalWorker, uncached: LocalWorker) -> None:
    """Turn two repeats turn one's prompt: all of it comes from the cache, and the reply is the uncached one."""
    first = [ChatMessage("user", "Tell me one fact about the moon.")]
    reply = await greedy(cached, first)
    second = [*first, ChatMessage("assistant", reply), ChatMessage("user", "And one about the sun?")]
    before = cached.prompt_tokens_reused
    assert await greedy(cached, second) == await greedy(uncached, second)
    assert cached.prompt_tokens_reused - before >= len(cached.encode_chat(first))


async def test_a_later_probe_reuses_the_thinking_an_earlier_probe_computed(
    cached: LocalWorker, uncached: LocalWorker
) -> None:
    """Two probes of one thinking stream: the second reuses the first's prompt and thinking; both match uncached."""
    messages = [ChatMessage("user", "What is 12 times 7?")]
    results = {}
    for name, w in (("cached", cached), ("uncached", uncached)):
        stream = await w.generate(messages, SamplingParams(max_tokens=30, thinking="on"))
        probes, seen = [], 0
        async for _ in stream:
            seen += 1
            if seen in (10, 25):
                before = w.prompt_tokens_reused
                probes.append(await w.probe(stream, "\nAnswer: ", 4))
                if name == "cached" and seen == 25:
                    assert w.prompt_tokens_reused - before >= len(w.encode_chat(messages)) + 10
        results[name] = probes
    for mine, plain in zip(results["cached"], results["uncached"], strict=True):  # same text; confidence to rounding
        assert (mine.text, mine.tokens) == (plain.text, plain.tokens)
        assert math.isclose(mine.confidence, plain.confidence, rel_tol=1e-4)
