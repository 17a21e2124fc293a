"""Sampled full generations of live requests, kept in Redis per domain for autopilot.

The request pipeline builds a ``Sample`` once a sampled request's full generation is known (a
rule-stopped request generated on unseen, or one that ended on its own) and calls
``SampleSink.submit``, which never blocks and never fails: the sample goes on a bounded queue
and a background task writes it. Samples hold text, so they live only here -- never in the audit
log or in logs (which see counts only).

Redis layout per domain: ``<prefix>:<domain>`` a sorted set (score: the sample's time, member:
the msgpack-encoded sample), trimmed on every write to the newest ``max_samples`` and to
``max_age_s``; ``<prefix>:<domain>:total`` counts every sample ever written (what the tuner
watches for "N new samples", the same number on every replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Iterable
from typing import Protocol, cast

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.policy.records import connect
from gateway.worker.protocol import Phase, TokenEvent

log = structlog.get_logger(__name__)

DEFAULT_PREFIX = "stopgate:samples"
QUEUE_SIZE = 1024
BATCH = 64
_REDIS_DOWN = (RedisError, OSError, asyncio.TimeoutError)


class SampleToken(msgspec.Struct, frozen=True, array_like=True):
    """One generated token as replay needs it (``entropy`` feeds the confidence rule)."""

    id: int
    text: str
    logprob: float
    entropy: float = 0.0
    phase: Phase = "answer"

    def event(self, index: int) -> TokenEvent:
        return TokenEvent(index, self.id, self.text, self.logprob, self.entropy, self.phase)


def sample_tokens(events: Iterable[TokenEvent]) -> tuple[SampleToken, ...]:
    """The generated ``TokenEvent``s of a request, in order, as a sample keeps them."""
    return tuple(SampleToken(e.token_id, e.text, e.logprob, e.entropy, e.phase) for e in events)


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    """One full generation of a live request under ``policy_version`` of ``domain``.

    ``events``: every generated token of the FULL generation (thinking and answer), in order.
    ``max_tokens``: the budget the full generation ran under (replay cannot see past it).
    ``stopped_at``: answer tokens the client got when a rule stopped the request (the rest was
    generated on, unseen); None when it ended on its own. ``finish_reason``: how the full
    generation ended (``stop``: end of sequence, ``length``: the budget).
    """

    domain: str
    policy_version: int
    policy_hash: str
    request_id: str
    ts: float
    max_tokens: int
    events: tuple[SampleToken, ...]
    stopped_at: int | None = None
    stop_rule: str | None = None
    finish_reason: str = "stop"

    def token_events(self, phase: Phase | None = "answer") -> list[TokenEvent]:
        """The tokens of one phase (None: all) as ``TokenEvent``s, numbered from 0."""
        chosen = [t for t in self.events if phase is None or t.phase == phase]
        return [t.event(i) for i, t in enumerate(chosen)]

    def answer_text(self, tokens: int | None = None) -> str:
        """The answer phase's text, or its first ``tokens`` tokens."""
        answer = [t.text for t in self.events if t.phase == "answer"]
        return "".join(answer if tokens is None else answer[:tokens])

    @property
    def thinking_tokens(self) -> int:
        return sum(t.phase == "thinking" for t in self.events)


class SampleSink(Protocol):
    def submit(self, sample: Sample) -> None:
        """Queue ``sample`` for storage; returns at once and never raises."""


class SampleCounts(msgspec.Struct, frozen=True):
    held: int  # samples kept now (after the count and age bounds)
    total: int  # samples ever written for the domain


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Sample)


class SampleStore:
    """The Redis side of samples: a non-blocking ``submit`` plus reads for the tuner.

    ``on_written(domain)`` is called (on the event loop) after each sample is stored.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        max_samples: int = 500,
        max_age_s: float = 7 * 86400.0,
        prefix: str = DEFAULT_PREFIX,
        on_written: Callable[[str], None] | None = None,
        client: Redis | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.max_samples = max_samples
        self.max_age_s = max_age_s
        self.prefix = prefix
        self.on_written = on_written
        self.written = 0
        self.dropped = 0  # queue full or Redis down: samples are best effort
        self._client = client
        self._queue: asyncio.Queue[Sample] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None

    @property
    def client(self) -> Redis:
        if self._client is None:
            self._client = connect(self.redis_url)
        return self._client

    def key(self, domain: str) -> str:
        return f"{self.prefix}:{domain}"

    # -- the request path ---------------------------------------------------------------------

    def submit(self, sample: Sample) -> None:
        try:
            self._queue.put_nowait(sample)
        except asyncio.QueueFull:
            self.dropped += 1

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="autopilot-sample-writer")

    async def close(self, drain_s: float = 2.0) -> None:
        """Write what is queued (for up to ``drain_s``), then stop."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_s)
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.write(batch)
            except _REDIS_DOWN as exc:
                self.dropped += len(batch)
                log.warning("autopilot.samples_dropped", count=len(batch), error=type(exc).__name__)
                await asyncio.sleep(0.5)
            except Exception:  # a bug must not end the writer
                self.dropped += len(batch)
                log.exception("autopilot.sample_write_failed")
            finally:
                for _ in batch:
                    self._queue.task_done()

    # -- Redis --------------------------------------------------------------------------------

    async def write(self, samples: Collection[Sample]) -> None:
        """Store ``samples`` (one transaction), trim every domain touched to its bounds."""
        if not samples:
            return
        now = time.time()
        domains = sorted({s.domain for s in samples})
        async with self.client.pipeline(transaction=True) as pipe:
            for s in samples:
                pipe.zadd(self.key(s.domain), {_ENCODER.encode(s): s.ts})
                pipe.incr(self.key(s.domain) + ":total")
            for domain in domains:
                key = self.key(domain)
                pipe.zremrangebyscore(key, "-inf", f"({now - self.max_age_s!r}")
                pipe.zremrangebyrank(key, 0, -(self.max_samples + 1))
                pipe.expire(key, max(1, int(self.max_age_s)))
            await pipe.execute()
        self.written += len(samples)
        if self.on_written is not None:
            for s in samples:
                self.on_written(s.domain)

    async def read(self, domain: str) -> list[Sample]:
        """The domain's samples within the age bound, oldest first."""
        rows = await self.client.zrangebyscore(self.key(domain), time.time() - self.max_age_s, "+inf")
        out: list[Sample] = []
        for raw in rows:
            try:
                out.append(_DECODER.decode(cast(bytes, raw)))
            except msgspec.DecodeError:
                continue  # written by an incompatible replica: not ours to interpret
        return out

    async def counts(self, domains: Collection[str]) -> dict[str, SampleCounts]:
        ordered = sorted(domains)
        cutoff = time.time() - self.max_age_s
        async with self.client.pipeline(transaction=False) as pipe:
            for domain in ordered:
                pipe.zcount(self.key(domain), cutoff, "+inf")
                pipe.get(self.key(domain) + ":total")
            rows = await pipe.execute()
        return {d: SampleCounts(int(rows[2 * i]), int(rows[2 * i + 1] or 0)) for i, d in enumerate(ordered)}

    async def clear(self, domain: str) -> None:
        await self.client.delete(self.key(domain))
