"""Micro-batching: concurrent calls share batches, answers keep their order, errors reach callers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.classify.batcher import MicroBatcher


@pytest.fixture()
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


async def test_single_call_runs_at_once(executor: ThreadPoolExecutor) -> None:
    """An idle batcher answers one call in a batch of one, off the event loop thread."""
    seen: list[tuple[list[int], str]] = []

    def double(items: Sequence[int]) -> list[int]:
        seen.append((list(items), threading.current_thread().name))
        return [i * 2 for i in items]

    batcher = MicroBatcher(double, executor)
    assert await batcher.submit(21) == 42
    assert seen[0][0] == [21] and seen[0][1] != threading.current_thread().name


async def test_calls_arriving_while_busy_share_the_next_batch(executor: ThreadPoolExecutor) -> None:
    """While one batch computes, later calls queue and go together, each getting its own answer."""
    release = threading.Event()
    batches: list[list[int]] = []

    def slow(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        release.wait(5)
        return [i + 100 for i in items]

    batcher = MicroBatcher(slow, executor, max_batch=4)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.05)  # the first batch is now running
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 7)]
    await asyncio.sleep(0.05)
    release.set()
    assert await first == 100
    assert await asyncio.gather(*rest) == [101, 102, 103, 104, 105, 106]
    assert batches == [[0], [1, 2, 3, 4], [5, 6]]


async def test_errors_reach_every_caller_of_the_batch(executor: ThreadPoolExecutor) -> None:
    """An exception in the batch function is raised in each caller; the batcher keeps working."""
    calls = 0

    def flaky(items: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("boom")
        return [s.upper() for s in items]

    batcher = MicroBatcher(flaky, executor)
    with pytest.raises(ValueError, match="boom"):
        await batcher.submit("a")
    assert await batcher.submit("b") == "B"


async def test_wrong_result_count_is_an_error(executor: ThreadPoolExecutor) -> None:
    """A batch function that drops results fails its callers instead of hanging them."""
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: [], executor)
    with pytest.raises(RuntimeError, match="0 results for 1"):
        await batcher.submit(1)


async def test_cancelled_callers_are_skipped(executor: ThreadPoolExecutor) -> None:
    """A caller that gave up before its batch started costs no work."""
    release = threading.Event()
    batches: list[list[int]] = []

    def slow(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        release.wait(5)
        return list(items)

    batcher = MicroBatcher(slow, executor)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.05)
    gone = asyncio.ensure_future(batcher.submit(2))
    kept = asyncio.ensure_future(batcher.submit(3))
    await asyncio.sleep(0.01)
    gone.cancel()
    release.set()
    assert (await first, await kept) == (1, 3)
    assert batches == [[1], [3]]
