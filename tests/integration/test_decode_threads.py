"""The decode thread runs with the cores it was given; the thread that started it keeps its own count."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from gateway.worker.protocol import ChatMessage, SamplingParams
from tests.integration.conftest import running_local_worker


@pytest.fixture
def one_thread_default() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


async def test_decode_thread_takes_the_reserved_cores_and_the_caller_keeps_one(one_thread_default: None) -> None:
    """With threads=2 the decode thread pins 2 intra-op threads; the caller's default stays 1."""
    async with running_local_worker(max_batch=2, threads=2) as worker:
        assert worker._scheduler is not None and worker._scheduler.decode_threads == 2
        assert torch.get_num_threads() == 1
        stream = await worker.generate([ChatMessage("user", "Say hi.")], SamplingParams(max_tokens=3))
        assert len([e async for e in stream]) >= 1
