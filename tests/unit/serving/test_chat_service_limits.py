"""ChatService takes a stream slot before its first await, so a burst cannot overrun the limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from gateway.errors import RateLimited, WorkerError
from gateway.serving.call import ChatCall
from gateway.serving.chat import ChatService
from gateway.serving.routing import Router
from gateway.worker.protocol import ChatMessage, ProbeResult, SamplingParams, TokenEvent, TokenStream


class IdleStream:
    prompt_tokens = 3
    cached_tokens = 0
    finish_reason = None

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        await asyncio.sleep(3600)
        yield TokenEvent(0, 0, "", 0.0)

    def cancel(self) -> None:
        pass


class SlowStartWorker:
    """A stand-in worker whose generate() yields to the loop, as a real one does."""

    model_id = "m"
    context_length = 1024
    ready = True
    queue_depth = 0
    active = 0
    tokens_generated = 0

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream:
        await asyncio.sleep(0.01)
        return IdleStream()

    async def probe(self, stream: TokenStream, suffix: str, max_tokens: int) -> ProbeResult:
        raise NotImplementedError


async def test_a_burst_of_requests_gets_429_beyond_the_limit() -> None:
    """Five requests opened at once against a limit of two: two run, three are refused."""
    service = ChatService(SlowStartWorker(), Router(), max_concurrent_streams=2)
    calls = [ChatCall(messages=[ChatMessage("user", "hi")], max_tokens=4) for _ in range(5)]
    results = await asyncio.gather(*(service.open(c) for c in calls), return_exceptions=True)
    assert sum(isinstance(r, RateLimited) for r in results) == 3
    assert service.active_streams == 2
    for r in results:
        if not isinstance(r, BaseException):
            r.close()
    assert service.active_streams == 0


class FailingWorker(SlowStartWorker):
    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream:
        raise WorkerError("upstream down")


async def test_a_request_that_fails_to_open_gives_its_slot_back() -> None:
    """A request that fails while opening does not keep its stream slot."""
    service = ChatService(FailingWorker(), Router(), max_concurrent_streams=1)
    for _ in range(3):
        with pytest.raises(WorkerError):
            await service.open(ChatCall(messages=[ChatMessage("user", "x")]))
    assert service.active_streams == 0
