"""Server-sent events framing: ``data: <json>\\n\\n`` frames, keep-alive comments, ``[DONE]``.

``with_keepalive`` also coalesces: the source runs in one task per stream, and the frames it makes
while the previous write is under way (the tokens of one upstream read, say) go out in one write,
up to ``MAX_FRAMES_PER_WRITE`` at a time. Each frame stays its own SSE event; only the number of
sends through the ASGI server and the socket drops, a large part of a busy relay's per-token cost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"

MAX_AHEAD_BYTES = 64 * 1024
"""The source waits once this much is made and not yet written (a slow client holds it back)."""

MAX_FRAMES_PER_WRITE = 16
"""After this many frames made without a pause the source lets the write (and other streams) run:
a burst of tokens from one upstream read neither waits for the whole burst nor holds up the loop."""


def frame(payload: Any) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


async def with_keepalive(
    frames: AsyncIterator[bytes], interval_s: float, *, max_ahead: int = MAX_AHEAD_BYTES
) -> AsyncIterator[bytes]:
    """Pass ``frames`` through in order, joining those ready together into one item, and add a
    comment frame whenever none came for ``interval_s``.

    Proxies close idle connections; a queued request may wait a while for its first token. The
    source is advanced in its own task so a timeout never cancels it mid-token; closing this
    generator (a client disconnect) cancels that task and closes the source.
    """
    loop = asyncio.get_running_loop()
    ready: list[bytes] = []
    size = 0
    finished = False
    failure: Exception | None = None
    wake: asyncio.Future[bool] | None = None  # the consumer waits on it: True = frames or the end
    room: asyncio.Future[None] | None = None  # the producer waits on it while ``max_ahead`` is made

    def _wake() -> None:
        if wake is not None and not wake.done():
            wake.set_result(True)

    async def produce() -> None:
        nonlocal size, finished, failure, room
        try:
            async for item in frames:
                ready.append(item)
                size += len(item)
                _wake()
                if size >= max_ahead:
                    room = loop.create_future()
                    await room
                elif len(ready) >= MAX_FRAMES_PER_WRITE:
                    await asyncio.sleep(0)
        except Exception as exc:  # raised to the consumer after the frames made before it
            failure = exc
        finally:
            finished = True
            _wake()

    def _timeout(waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():
            waiter.set_result(False)

    producer = loop.create_task(produce())
    try:
        while True:
            if ready:
                out = ready[0] if len(ready) == 1 else b"".join(ready)
                ready.clear()
                size = 0
                if room is not None and not room.done():
                    room.set_result(None)
                yield out
                continue
            if finished:
                if failure is not None:
                    raise failure
                return
            wake = loop.create_future()
            timer = loop.call_later(interval_s, _timeout, wake)
            try:
                came = await wake
            finally:
                timer.cancel()
                wake = None
            if not came:
                yield KEEPALIVE
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
        close = getattr(frames, "aclose", None)
        if close is not None:
            await close()
