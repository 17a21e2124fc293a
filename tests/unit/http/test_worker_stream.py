"""The worker API's stream ends any failure after the first byte with one error frame and [DONE]."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from gateway.errors import WorkerError
from gateway.http.worker_api import _Shape, _sse
from gateway.worker.protocol import TokenEvent


class BreakingStream:
    """A token stream that yields one token, then fails with ``exc``."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.cancelled = False
        self.finish_reason = None
        self.prompt_tokens = 3

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        yield TokenEvent(0, 7, "Hi", -0.1, 0.5)
        raise self.exc

    def cancel(self) -> None:
        self.cancelled = True


async def frames(exc: Exception) -> tuple[list[str], BreakingStream]:
    stream = BreakingStream(exc)
    shape = _Shape("cmpl-1", "m", chat=True, logprobs=False, token_ids=False)
    out = [chunk.decode() async for chunk in _sse(stream, shape, include_usage=False)]
    return out, stream


async def test_an_unexpected_failure_becomes_an_internal_error_frame() -> None:
    """A RuntimeError mid-stream: the token, then a server_error frame and [DONE]; the stream is cancelled."""
    out, stream = await frames(RuntimeError("boom"))
    assert '"Hi"' in out[0]
    error = json.loads(out[-2].removeprefix("data: "))["error"]
    assert error["type"] == "server_error" and "boom" not in error["message"]
    assert out[-1] == "data: [DONE]\n\n" and stream.cancelled


async def test_a_stopgate_error_keeps_its_own_mapping() -> None:
    """A WorkerError mid-stream is framed through the error map, not as a generic internal error."""
    out, _ = await frames(WorkerError("worker gone"))
    error = json.loads(out[-2].removeprefix("data: "))["error"]
    assert "worker gone" in error["message"] and out[-1] == "data: [DONE]\n\n"
