"""A decode step hands all its events for one event loop over in a single wake-up of that loop."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from gateway.worker.detokenize import IncrementalDetokenizer
from gateway.worker.protocol import SamplingParams, TokenEvent
from gateway.worker.scheduler import AsyncioDeliver, BatchScheduler
from gateway.worker.sequence import Sequence


async def test_one_steps_events_for_one_loop_arrive_in_one_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streams made separately on one loop share one delivery: one call_soon_threadsafe, events in order."""
    loop = asyncio.get_running_loop()
    wakeups: list[Any] = []
    original = loop.call_soon_threadsafe
    monkeypatch.setattr(loop, "call_soon_threadsafe", lambda fn, *args: wakeups.append(fn) or original(fn, *args))
    no_text = IncrementalDetokenizer(SimpleNamespace(decode=lambda ids, **_: ""))
    seqs = [Sequence([1], SamplingParams(max_tokens=1), AsyncioDeliver(loop), no_text) for _ in range(3)]
    got: list[tuple[int, Any]] = []
    for n, seq in enumerate(seqs):
        seq.sink = lambda item, epoch, n=n: got.append((n, item))
    events = [TokenEvent(0, 5, "a", -0.1), None, TokenEvent(0, 6, "b", -0.2)]
    scheduler = BatchScheduler(SimpleNamespace(device=torch.device("cpu")))  # type: ignore[arg-type]
    scheduler._flush([(seq, event, 0) for seq, event in zip(seqs, events, strict=True)])
    await asyncio.sleep(0)
    assert len(wakeups) == 1
    assert got == list(enumerate(events))
