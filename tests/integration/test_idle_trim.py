"""The decode thread hands freed heap pages back once it has been idle a moment, once per idle spell, and
never when trimming is off."""

from __future__ import annotations

import asyncio

import pytest

from gateway.worker import heap
from gateway.worker.protocol import ChatMessage, SamplingParams
from tests.integration.conftest import running_local_worker

pytestmark = pytest.mark.model

IDLE_MS = 300


async def trims_over_a_generation(monkeypatch: pytest.MonkeyPatch, trim_idle_ms: int) -> list[int]:
    """Trim calls counted before a generation, right after it, after an idle spell and after a second one."""
    calls: list[bool] = []
    real = heap.trim
    monkeypatch.setattr(heap, "trim", lambda: calls.append(real()) or True)
    counts = []
    async with running_local_worker(max_batch=2, trim_idle_ms=trim_idle_ms) as w:
        await asyncio.sleep(IDLE_MS * 2 / 1000)
        counts.append(len(calls))
        stream = await w.generate([ChatMessage("user", "Name a fruit.")], SamplingParams(max_tokens=3))
        _ = [e async for e in stream]
        counts.append(len(calls))
        for _ in range(2):
            await asyncio.sleep(IDLE_MS * 2 / 1000)
            counts.append(len(calls))
    return counts


async def test_the_heap_is_trimmed_after_an_idle_spell_not_between_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """No trim before anything ran or right after a generation; one after the idle spell; none more while idle."""
    assert await trims_over_a_generation(monkeypatch, IDLE_MS) == [0, 0, 1, 1]


async def test_a_zero_idle_setting_never_trims(monkeypatch: pytest.MonkeyPatch) -> None:
    """trim_idle_ms=0 (STOPGATE_HEAP_TRIM_IDLE_MS=0): the heap is left as it is."""
    assert await trims_over_a_generation(monkeypatch, 0) == [0, 0, 0, 0]
