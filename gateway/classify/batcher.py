"""Micro-batching of concurrent async calls onto one worker thread.

Calls that arrive while a batch is being computed queue up and go together in the next batch, so
an idle gateway answers one query at once (no waiting window) while a busy one amortises each
forward pass over up to ``max_batch`` queries. The event loop never runs the computation itself.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _LoopState(Generic[T, R]):
    pending: deque[tuple[T, asyncio.Future[R]]] = field(default_factory=deque)
    draining: bool = False
    task: asyncio.Task[None] | None = None  # held so the drain task is not garbage-collected


class MicroBatcher(Generic[T, R]):
    """Runs ``fn(items) -> results`` (same length, same order) on ``executor`` in batches."""

    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R]], executor: Executor, *, max_batch: int = 32) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._fn = fn
        self._executor = executor
        self.max_batch = max_batch
        # Futures belong to one loop, so each loop that calls us gets its own queue.
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState[T, R]] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _LoopState()
        future: asyncio.Future[R] = loop.create_future()
        state.pending.append((item, future))
        if not state.draining:
            state.draining = True
            state.task = loop.create_task(self._drain(loop, state))
        return await future

    async def _drain(self, loop: asyncio.AbstractEventLoop, state: _LoopState[T, R]) -> None:
        try:
            while state.pending:
                batch: list[tuple[T, asyncio.Future[R]]] = []
                while state.pending and len(batch) < self.max_batch:
                    item, future = state.pending.popleft()
                    if not future.done():  # the caller went away: skip its work
                        batch.append((item, future))
                if not batch:
                    continue
                try:
                    results = await loop.run_in_executor(self._executor, self._fn, [i for i, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)}")
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            state.draining = False
            for _, future in state.pending:  # only reachable if the drain task itself was cancelled
                if not future.done():
                    future.cancel()
            state.pending.clear()
