"""Recorded generations for the trade-off benchmark: full greedy runs and probe side generations.

A full run is greedy with no stopping rules up to a cap; its token events are kept on disk under
``<data_dir>/bench-cache/<model key>/`` keyed by (model, prompt ids, cap), so a rerun of
``stopgate bench tradeoff`` or ``stopgate calibrate`` only replays policies. Probe answers (short
greedy side generations on prompt + prefix + suffix) are cached the same way, so a sweep over
probe parameters asks the model only for prefixes it has not seen.

Requests are submitted concurrently (bounded by a semaphore), so the worker's continuous
batching decodes many rows per forward pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

from gateway.worker.protocol import ProbeResult, SamplingParams, TokenEvent

CACHE_VERSION = 1
FULL_CAP = 512
"""Full inference: greedy, no stopping rules, at most this many completion tokens."""


class Generation(msgspec.Struct, frozen=True):
    """One greedy run: the prompt ids and every generated token as the worker reported it."""

    prompt_ids: list[int]
    cap: int
    finish_reason: str
    token_ids: list[int]
    texts: list[str]
    logprobs: list[float]
    entropies: list[float]

    @property
    def tokens(self) -> int:
        return len(self.token_ids)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @classmethod
    def from_events(
        cls, prompt_ids: Sequence[int], events: Sequence[TokenEvent], cap: int, finish_reason: str
    ) -> Generation:
        """A recorded generation from the token events a worker streamed (e.g. a sampled full run)."""
        return cls(
            list(prompt_ids),
            cap,
            finish_reason,
            [e.token_id for e in events],
            [e.text for e in events],
            [e.logprob for e in events],
            [e.entropy for e in events],
        )

    def events(self) -> list[TokenEvent]:
        return [
            TokenEvent(i, tid, text, lp, ent)
            for i, (tid, text, lp, ent) in enumerate(
                zip(self.token_ids, self.texts, self.logprobs, self.entropies, strict=True)
            )
        ]


class IdWorker(Protocol):
    """What the benchmark needs from ``LocalWorker``: greedy generation from token ids."""

    model_id: str

    def encode_text(self, text: str) -> list[int]: ...

    def generate_ids(self, prompt_ids: list[int], params: SamplingParams) -> object: ...


def model_key(model: str, device: str, dtype: str = "auto") -> str:
    """The cache folder of one model on one kind of device in one dtype (CPU fp32 and bf16 differ).

    The embedded model's key also names its GGUF file and size, so a new package version
    does not reuse generations of the old weights. A dtype other than the device's historical
    one (CPU fp32, CUDA bf16) is named in the key; those two keep their keys of before.
    """
    from gateway.settings import DEFAULT_MODEL
    from gateway.worker.model import embedded_gguf, pick_device, unusual_dtype

    key = f"{model.replace('/', '_')}--{pick_device(device).type}"
    if unusual := unusual_dtype(device, dtype):
        key += "--" + unusual
    if model == DEFAULT_MODEL:
        gguf = embedded_gguf()
        key += "--" + hashlib.sha256(f"{gguf.name}:{gguf.stat().st_size}".encode()).hexdigest()[:8]
    return key


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


class GenerationCache:
    """Full generations and probe answers of one model, on disk (one file per generation)."""

    def __init__(self, root: Path, model_key: str) -> None:
        self.dir = root / "bench-cache" / model_key.replace("/", "_")
        self._full = self.dir / "full"
        self._probes_file = self.dir / "probes.jsonl"
        self._probes: dict[str, ProbeResult] | None = None

    def _full_path(self, prompt_ids: Sequence[int], cap: int) -> Path:
        return self._full / f"{_digest(CACHE_VERSION, list(prompt_ids), cap)[:40]}.json"

    def get_full(self, prompt_ids: Sequence[int], cap: int) -> Generation | None:
        path = self._full_path(prompt_ids, cap)
        try:
            gen = msgspec.json.decode(path.read_bytes(), type=Generation)
        except (OSError, msgspec.DecodeError):
            return None
        return gen if gen.prompt_ids == list(prompt_ids) and gen.cap == cap else None

    def put_full(self, gen: Generation) -> None:
        self._full.mkdir(parents=True, exist_ok=True)
        _write_atomic(self._full_path(gen.prompt_ids, gen.cap), msgspec.json.encode(gen))

    @staticmethod
    def probe_key(ids: Sequence[int], max_tokens: int) -> str:
        return _digest(CACHE_VERSION, list(ids), max_tokens)[:40]

    def _load_probes(self) -> dict[str, ProbeResult]:
        if self._probes is None:
            self._probes = {}
            try:
                lines = self._probes_file.read_bytes().splitlines()
            except OSError:
                lines = []
            for line in lines:
                try:
                    key, text, tokens, confidence = msgspec.json.decode(line)
                except (msgspec.DecodeError, ValueError):
                    continue  # a line cut short by an interrupted run
                self._probes[key] = ProbeResult(text, tokens, confidence)
        return self._probes

    def get_probe(self, key: str) -> ProbeResult | None:
        return self._load_probes().get(key)

    def put_probe(self, key: str, result: ProbeResult) -> None:
        self._load_probes()[key] = result
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._probes_file.open("ab") as fh:
            fh.write(msgspec.json.encode([key, result.text, result.tokens, result.confidence]) + b"\n")


async def generate(worker: IdWorker, prompt_ids: list[int], max_tokens: int) -> Generation:
    """One greedy run, every token event recorded."""
    stream = worker.generate_ids(prompt_ids, SamplingParams(max_tokens=max_tokens, temperature=0.0))
    ids: list[int] = []
    texts: list[str] = []
    lps: list[float] = []
    ents: list[float] = []
    async for event in stream:  # type: ignore[attr-defined]
        ids.append(event.token_id)
        texts.append(event.text)
        lps.append(event.logprob)
        ents.append(event.entropy)
    reason = getattr(stream, "finish_reason", None) or "stop"
    return Generation(list(prompt_ids), max_tokens, str(reason), ids, texts, lps, ents)


async def probe_ids(worker: IdWorker, ids: list[int], max_tokens: int) -> ProbeResult:
    """The same side generation as ``LocalWorker.probe``: greedy, confidence = exp(mean logprob)."""
    gen = await generate(worker, ids, max_tokens)
    return ProbeResult.from_logprobs(gen.text, gen.logprobs)


async def fill_full(
    worker: IdWorker,
    cache: GenerationCache,
    prompts: Sequence[list[int]],
    cap: int,
    *,
    concurrency: int,
    on_done: Callable[[], None] | None = None,
) -> tuple[list[Generation], int]:
    """Full generations for ``prompts`` (cached ones read back), generated ``concurrency`` at a time.

    Also returns how many were generated now, not read from the cache.
    """
    results: list[Generation | None] = [cache.get_full(p, cap) for p in prompts]
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            gen = await generate(worker, prompts[i], cap)
        cache.put_full(gen)
        results[i] = gen
        if on_done is not None:
            on_done()

    missing = [i for i, r in enumerate(results) if r is None]
    if on_done is not None:
        for _ in range(len(prompts) - len(missing)):
            on_done()
    await asyncio.gather(*(one(i) for i in missing))
    return [r for r in results if r is not None], len(missing)


class ProbeAnswers:
    """Answers probes from the cache, asking ``worker`` (concurrency-bounded) for the rest."""

    def __init__(self, worker: IdWorker | None, cache: GenerationCache, concurrency: int = 16) -> None:
        self.worker = worker
        self.cache = cache
        self._gate = asyncio.Semaphore(concurrency)
        self._suffix_ids: dict[str, list[int]] = {}
        self._inflight: dict[str, Awaitable[ProbeResult]] = {}
        self.asked = 0
        self.generated = 0

    def suffix_ids(self, suffix: str) -> list[int]:
        if suffix not in self._suffix_ids:
            if self.worker is None:
                raise LookupError("no worker to tokenise the probe suffix")
            self._suffix_ids[suffix] = self.worker.encode_text(suffix)
        return self._suffix_ids[suffix]

    async def answer(self, prefix_ids: list[int], suffix: str, max_tokens: int) -> ProbeResult:
        """The probe on ``prefix_ids`` (prompt + generated so far) + ``suffix``."""
        ids = [*prefix_ids, *self.suffix_ids(suffix)]
        key = self.cache.probe_key(ids, max_tokens)
        self.asked += 1
        hit = self.cache.get_probe(key)
        if hit is not None:
            return hit
        if self.worker is None:
            raise LookupError("probe answer not cached and no worker to generate it")
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._generate(key, ids, max_tokens))
            self._inflight[key] = task
        return await task

    async def _generate(self, key: str, ids: list[int], max_tokens: int) -> ProbeResult:
        assert self.worker is not None
        async with self._gate:
            result = await probe_ids(self.worker, ids, max_tokens)
        self.generated += 1
        self.cache.put_probe(key, result)
        self._inflight.pop(key, None)
        return result
