"""Server-sent events framing: ``data: <json>\\n\\n`` frames, keep-alive comments, ``[DONE]``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def frame(payload: Any) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


async def with_keepalive(frames: AsyncIterator[bytes], interval_s: float) -> AsyncIterator[bytes]:
    """Pass ``frames`` through, adding a comment frame whenever none came for ``interval_s``.

    Proxies close idle connections; a queued request may wait a while for its first token.
    The source is advanced in a task so a timeout never cancels it mid-token.
    """
    source = frames.__aiter__()
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(source.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=interval_s)
            if not done:
                yield KEEPALIVE
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield item
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await pending
        await source.aclose()  # type: ignore[attr-defined]
