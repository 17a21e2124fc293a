"""STOPGATE_DTYPE=float16 on CPU with the real model: every linear layer is fp16, greedy text is the same alone
and batched, and the cache key names the dtype."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.worker.fp16_weights import Fp16Linear, fp16_weights_supported
from gateway.worker.local import LocalWorker
from gateway.worker.model import load_model
from gateway.worker.protocol import ChatMessage, SamplingParams
from tests.integration.conftest import running_local_worker

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(not fp16_weights_supported(), reason="this torch build has no fbgemm"),
]

PROMPTS = ("Name three fruits.", "What is the capital of France?", "Describe rain in one sentence.")


@pytest.fixture(scope="module")
async def worker() -> AsyncIterator[LocalWorker]:
    async with running_local_worker(max_batch=4, dtype="float16") as w:
        yield w


async def greedy(w: LocalWorker, prompt: str) -> str:
    stream = await w.generate([ChatMessage("user", prompt)], SamplingParams(max_tokens=24))
    return "".join([e.text async for e in stream])


def test_every_linear_layer_holds_fp16_weights() -> None:
    """The attention, MLP and output projections are all Fp16Linear; the key says float16."""
    loaded = load_model("smollm2-135m-instruct", "cpu", Path(".stopgate"), "float16")
    linears = [m for m in loaded.model.modules() if isinstance(m, Fp16Linear)]
    assert len(linears) == 7 * loaded.model.config.num_hidden_layers + 1
    assert loaded.key.endswith("@cpu-float16")


async def test_greedy_text_is_the_same_alone_and_batched(worker: LocalWorker) -> None:
    """Three greedy streams decoded together give what each gives alone."""
    alone = [await greedy(worker, p) for p in PROMPTS]
    together = await asyncio.gather(*(greedy(worker, p) for p in PROMPTS))
    assert all(alone) and list(together) == alone
