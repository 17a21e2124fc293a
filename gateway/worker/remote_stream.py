"""``RemoteTokenStream``: one generation on an upstream engine, read as ``TokenEvent``s.

A stream may have several legs: ``RemoteWorker.end_thinking`` cancels the running request and
continues the assistant message in a new one; the same stream object then goes on with the new
leg's events (answer phase). Reading goes on after ``finish_reason`` until the engine's trailing
usage chunk (prompt tokens, the engine's own completion count) or the end of the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, Protocol

import httpx
import msgspec

from gateway.errors import WorkerError
from gateway.worker.engines import Upstream
from gateway.worker.protocol import ChatMessage, FinishReason, SamplingParams, TokenEvent
from gateway.worker.remote_chunks import ChunkReader


class StreamOwner(Protocol):
    """What a stream needs from its worker (``RemoteWorker``): a token counter and the release."""

    tokens_generated: int

    async def release(self, upstream: Upstream, response: httpx.Response) -> None: ...


_FINISH: dict[str, FinishReason] = {"length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}


async def sse_data(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """The payloads of a response's ``data:`` lines, stripped, as bytes (no text decoding: the JSON
    decoder takes bytes). Lines end in ``\\n``, ``\\r\\n`` or ``\\r``, as ``aiter_lines`` reads them."""
    tail = b""
    # Engines send event streams uncompressed: then the raw body is the bytes, one decoder layer less.
    encoded = response.headers.get("content-encoding", "identity") != "identity"
    async for raw in response.aiter_bytes() if encoded else response.aiter_raw():
        buf = tail + raw if tail else raw
        cut = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
        if cut < 0:
            tail = buf
            continue
        tail = buf[cut + 1 :]
        for line in buf[: cut + 1].splitlines():
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if tail.startswith(b"data:"):
        yield tail[5:].strip()


_decode = msgspec.json.Decoder().decode


def decode_chunk(data: bytes) -> Any:
    """One chunk's JSON; what msgspec refuses (``NaN``/``Infinity`` from a Python engine's
    ``json.dumps``) goes through the standard parser, which takes those (and fails as before)."""
    try:
        return _decode(data)
    except msgspec.DecodeError:
        return json.loads(data)


DRAIN_S = 0.5
"""How long the end of a response may take after ``[DONE]``."""


async def _drain(payloads: AsyncIterator[bytes]) -> None:
    """Read a finished response to its end, so its connection goes back to the pool: a response
    closed unread closes its connection, and the next request pays a new TCP handshake (and the
    engine a new connection). An engine that keeps the response open loses it after ``DRAIN_S``."""
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(DRAIN_S):
            async for _ in payloads:
                pass


class RemoteTokenStream:
    def __init__(
        self,
        worker: StreamOwner,
        upstream: Upstream,
        response: httpx.Response,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        reader: ChunkReader,
    ) -> None:
        self._worker = worker
        self.upstream = upstream
        self._response = response
        self.messages = list(messages)
        self.params = params
        self.reader = reader
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.finish_reason: FinishReason | None = None
        self.engine_completion_tokens: int | None = None  # the engine's usage figure for the last leg
        self.events = 0
        self.appended_tokens = 0  # forced-end text appended to the generation (thinking)
        self._leg = 0
        self._ready: deque[TokenEvent] = deque()
        self._cancelled = False
        self._released = False
        self._ended = False  # a forced end with no continuation (no budget left, or none possible)

    @property
    def text(self) -> list[str]:
        """The raw generated text so far, markers included, as one item (what probes continue)."""
        return [self.reader.raw_text]

    @property
    def end_events(self) -> list[TokenEvent]:
        """End-of-sequence tokens the engine generated and counts in its usage, as events without text that
        no rule sees: ``completion_tokens`` equal to the engine's = events + these; their logprobs entries
        close the client's logprobs."""
        return self.reader.end_events

    @property
    def remaining(self) -> int:
        """Tokens of the request's budget not yet generated (both phases, appended text included)."""
        return self.params.max_tokens - self.events - self.appended_tokens

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        try:
            while True:
                leg = self._leg
                async with contextlib.aclosing(self._read_leg(self._response, leg)) as events:
                    async for event in events:
                        yield event
                        if self._cancelled or self._leg != leg:
                            break
                while self._ready:  # the pieces a forced end resolved, before the next leg's
                    event = self._ready.popleft()
                    self.events += 1
                    yield event
                if self._cancelled or self._ended or self._leg == leg:
                    break
            if not self._cancelled:
                for event in self.reader.finish():
                    self.events += 1
                    yield event
        except httpx.HTTPError as exc:
            if not self._cancelled:
                raise WorkerError(f"upstream {self.upstream.url} broke off: {exc}") from exc
        finally:
            if self._cancelled:
                self.finish_reason = "cancelled"
            await self._release()

    async def _read_leg(self, response: httpx.Response, leg: int) -> AsyncGenerator[TokenEvent, None]:
        async with contextlib.aclosing(sse_data(response)) as payloads:
            async for data in payloads:
                if self._cancelled or self._leg != leg:
                    return
                if data == b"[DONE]":
                    await _drain(payloads)
                    return
                chunk = decode_chunk(data)
                if "error" in chunk:
                    error = chunk["error"]
                    message = error.get("message", error) if isinstance(error, dict) else error
                    raise WorkerError(f"upstream error: {message}")
                if usage := chunk.get("usage"):
                    self._usage(usage, leg)
                for choice in chunk.get("choices") or []:
                    if choice.get("index", 0) != 0:
                        continue
                    for event in self.reader.read(choice):
                        self.events += 1
                        self._worker.tokens_generated += 1
                        yield event
                    if reason := choice.get("finish_reason"):
                        self.finish_reason = _FINISH.get(reason, "stop")

    def _usage(self, usage: dict[str, Any], leg: int) -> None:
        if leg == 0:
            if usage.get("prompt_tokens"):
                self.prompt_tokens = int(usage["prompt_tokens"])
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
            if isinstance(cached, int):  # vLLM with --enable-prompt-tokens-details, stopgate worker
                self.cached_tokens = cached
        if usage.get("completion_tokens") is not None:
            self.engine_completion_tokens = int(usage["completion_tokens"])

    def cancel(self) -> None:
        """Closing the HTTP response is how the upstream learns to stop (it sees the disconnect)."""
        if not self._cancelled:
            self._cancelled = True
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(self._release())

    # -- legs (used by RemoteWorker.end_thinking) -----------------------------------------------

    async def cut(self, text: str) -> None:
        """End the running leg (the upstream stops generating) and append ``text`` to the raw text."""
        self._leg += 1
        await self._release()
        self._ready.extend(self.reader.end_thinking(text))

    def end(self, reason: FinishReason) -> None:
        """No continuation follows a cut: the stream ends after the pending events."""
        self._ended = True
        self.finish_reason = reason

    def resume(self, upstream: Upstream, response: httpx.Response) -> None:
        """Go on with a continuation request's response."""
        self.upstream, self._response, self._released = upstream, response, False
        self.finish_reason = None

    async def _release(self) -> None:
        if not self._released:
            self._released = True
            await self._worker.release(self.upstream, self._response)
