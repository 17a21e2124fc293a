"""SSE keep-alive: comment frames fill long gaps, and a consumer that stops closes the source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gateway.http.sse import KEEPALIVE, with_keepalive


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
