"""The decode thread hands freed heap pages back once it has been idle a moment, once per idle spell."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.worker import heap
from gateway.worker.local import LocalWorker
from gateway.worker.protocol import ChatMessage, SamplingParams
from gateway.worker.scheduler import TRIM_AFTER_IDLE_S

pytestmark = pytest.mark.model


async def test_the_heap_is_trimmed_after_an_idle_spell_not_between_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """No trim while loaded or right after a generation; one after TRIM_AFTER_IDLE_S idle; none more while idle."""
    calls: list[bool] = []
    real = heap.trim
    monkeypatch.setattr(heap, "trim", lambda: calls.append(real()) or True)
    w = LocalWorker("smollm2-135m-instruct", "cpu", Path(".stopgate"), max_batch=2)
    await w.start()
    try:
        await asyncio.sleep(TRIM_AFTER_IDLE_S * 2)
        assert calls == []  # nothing ran yet: nothing to hand back
        stream = await w.generate([ChatMessage("user", "Name a fruit.")], SamplingParams(max_tokens=3))
        _ = [e async for e in stream]
        assert calls == []
        await asyncio.sleep(TRIM_AFTER_IDLE_S * 2)
        assert len(calls) == 1
        await asyncio.sleep(TRIM_AFTER_IDLE_S * 2)
        assert len(calls) == 1
    finally:
        await w.close()
