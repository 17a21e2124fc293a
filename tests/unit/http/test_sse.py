"""SSE keep-alive and coalescing: comment frames fill gaps, ready frames go out together, closing closes the source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.http.sse import KEEPALIVE, MAX_FRAMES_PER_WRITE, with_keepalive


async def test_gaps_get_keepalive_frames_and_frames_pass_through() -> None:
    """A gap longer than the interval gets comment frames; every frame arrives once, in order."""

    async def source() -> AsyncIterator[bytes]:
        yield b"a"
        await asyncio.sleep(0.25)
        yield b"b"

    out = [f async for f in with_keepalive(source(), 0.1)]
    assert out[0] == b"a" and out[-1] == b"b"
    assert len(out) >= 3 and set(out[1:-1]) == {KEEPALIVE}


async def test_closing_the_stream_runs_the_source_cleanup() -> None:
    """A consumer that stops mid-wait (a client disconnect) closes the source, so its finally runs."""
    closed = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        try:
            yield b"a"
            await asyncio.sleep(3600)
            yield b"b"
        finally:
            closed.set()

    frames = with_keepalive(source(), 0.05)
    assert await frames.__anext__() == b"a"
    assert await frames.__anext__() == KEEPALIVE
    await frames.aclose()  # type: ignore[attr-defined]
    assert closed.is_set()


async def test_frames_made_while_a_write_is_under_way_go_out_in_one_item() -> None:
    """Frames the source makes without waiting are joined into one item, in order; later ones follow."""

    async def source() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"
        yield b"c"
        await asyncio.sleep(0.01)
        yield b"d"

    out = [f async for f in with_keepalive(source(), 5.0)]
    assert b"".join(out) == b"abcd"
    assert len(out) < 4


async def test_a_slow_consumer_holds_the_source_back() -> None:
    """The source stops once ``max_ahead`` bytes wait to be written, and goes on when they are."""
    made = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal made
        for _ in range(100):
            made += 1
            yield b"x" * 10

    frames = with_keepalive(source(), 5.0, max_ahead=30)
    first = await frames.__anext__()
    await asyncio.sleep(0.01)  # the consumer is busy; the source may run ahead only so far
    assert made <= len(first) // 10 + 3
    rest = [f async for f in frames]
    assert len(first) + sum(map(len, rest)) == 1000


async def test_an_error_of_the_source_comes_after_its_frames() -> None:
    """A failing source's frames are delivered, then its exception is raised to the consumer."""

    async def source() -> AsyncIterator[bytes]:
        yield b"a"
        raise ValueError("boom")

    got = []
    with pytest.raises(ValueError, match="boom"):
        async for f in with_keepalive(source(), 5.0):
            got.append(f)
    assert got == [b"a"]


async def test_a_long_burst_is_written_in_pieces() -> None:
    """A source that never pauses is written at most ``MAX_FRAMES_PER_WRITE`` frames at a time, all in order."""

    async def source() -> AsyncIterator[bytes]:
        for i in range(40):
            yield b"%02d" % i

    out = [f async for f in with_keepalive(source(), 5.0)]
    assert b"".join(out) == b"".join(b"%02d" % i for i in range(40))
    assert len(out) > 1 and max(len(f) for f in out) <= 2 * MAX_FRAMES_PER_WRITE
