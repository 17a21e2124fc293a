"""The full-generation cache: a rerun reads every generation back and generates nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.offline.generations import GenerationCache, fill_full
from gateway.worker.protocol import SamplingParams, TokenEvent


class CountingWorker:
    """Greedy 'generation' that echoes the prompt ids as tokens, counting the calls."""

    model_id = "echo"

    def __init__(self) -> None:
        self.calls = 0

    def encode_text(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def generate_ids(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[TokenEvent]:
        self.calls += 1

        async def stream() -> AsyncIterator[TokenEvent]:
            for i, tid in enumerate(prompt_ids[: params.max_tokens]):
                yield TokenEvent(i, tid, chr(tid), -0.1, 0.1)

        return stream()


def test_fill_full_generates_only_what_the_cache_lacks(tmp_path: Path) -> None:
    """The first run generates every prompt, a rerun none; both return the same generations in order."""
    cache = GenerationCache(tmp_path, "echo")
    worker = CountingWorker()
    prompts = [[104, 105], [111, 107], [104, 105]]
    done: list[None] = []

    first, generated = asyncio.run(
        fill_full(worker, cache, prompts, 8, concurrency=2, on_done=lambda: done.append(None))
    )
    assert generated == 3 and worker.calls == 3 and len(done) == 3
    assert [g.text for g in first] == ["hi", "ok", "hi"]

    again, generated = asyncio.run(fill_full(worker, cache, prompts, 8, concurrency=2))
    assert generated == 0 and worker.calls == 3
    assert again == first
