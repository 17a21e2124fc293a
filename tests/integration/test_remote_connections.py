"""The remote worker's connections to an engine: kept for the next request when a generation ends, closed
(the engine's signal to stop) when one is cancelled. Against the bench's synthetic engine, in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from gateway.bench.upstream import Upstream
from gateway.serving.call import ChatCall
from gateway.serving.chat import ChatService
from gateway.serving.routing import Router
from gateway.worker.protocol import ChatMessage, SamplingParams
from gateway.worker.remote import RemoteWorker

QUESTION = [ChatMessage("user", "Tell me about rivers.")]


@dataclass
class Engine:
    url: str
    connections: int = 0
    upstream: Upstream = field(default_factory=Upstream)


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    eng = Engine("")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        eng.connections += 1
        await eng.upstream.handle(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    eng.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield eng


@pytest.fixture
async def remote(engine: Engine) -> AsyncIterator[RemoteWorker]:
    # No health polls while the test counts connections.
    worker = RemoteWorker([engine.url], model="synthetic", health_interval_s=3600)
    await worker.start()
    yield worker
    await worker.close()


async def settled(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not settled within 1 s")


async def test_generations_read_to_their_end_share_one_connection(engine: Engine, remote: RemoteWorker) -> None:
    """Three generations one after another, each read to ``[DONE]``, open no connection beyond the first."""
    before = engine.connections
    for _ in range(3):
        stream = await remote.generate(QUESTION, SamplingParams(max_tokens=6))
        assert len([e async for e in stream]) == 6
    assert engine.connections - before <= 1


async def test_a_request_the_gateway_ends_at_its_budget_keeps_the_connection(
    engine: Engine, remote: RemoteWorker
) -> None:
    """The budget spent, the run reads the engine's end (usage, ``[DONE]``) rather than disconnecting."""
    service = ChatService(remote, Router(), max_concurrent_streams=4)
    before = engine.connections
    for i in range(3):
        run = await service.open(ChatCall(messages=QUESTION, max_tokens=5, request_id=f"r{i}"))
        deltas = [d async for d in run.deltas()]
        run.close()
        assert run.finish_reason == "length" and len(deltas) == 5
    await settled(lambda: remote.active == 0)
    assert engine.connections - before <= 1


async def test_a_cancelled_generation_closes_its_connection(engine: Engine, remote: RemoteWorker) -> None:
    """Cancel is how the engine learns to stop: it sees its connection close, and stops writing tokens."""
    stream = await remote.generate(QUESTION, SamplingParams(max_tokens=100_000))
    async for event in stream:
        if event.index == 2:
            stream.cancel()
    await settled(lambda: engine.upstream.streams == 0)
    assert engine.upstream.tokens < 100_000
