"""``stopgate bench audit``: what auditing costs the request path, and whether an outage loses records.

Submits synthetic records the way finished requests would (bursts of ``--burst``, the event loop free
in between), then waits until every record is in the JSON lines file and the Redis Stream. Reports
the cost of ``submit()`` per call, the loop CPU time per record (submit + encode + file + stream),
end-to-end throughput, and the loop share at a given request rate. ``--outage S`` stops the bench's
own Redis halfway for S seconds and checks that the stream ends with every record exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.audit.log import AuditLog
from gateway.audit.query import percentile
from gateway.audit.record import AuditRecord, ShadowDecision, utc_now_iso
from gateway.audit.stream import DEFAULT_STREAM_KEY, RedisStreamSink
from gateway.bench.server import local_redis
from gateway.errors import ConfigError
from gateway.redis_server import LocalRedis

if TYPE_CHECKING:
    from gateway.settings import Settings


@dataclass(frozen=True)
class Options:
    records: int = field(default=20_000, metadata={"help": "records to submit (default 20000)"})
    burst: int = field(default=32, metadata={"help": "records submitted per loop turn (default 32)"})
    rate: float = field(default=0.0, metadata={"help": "records per second; 0: as fast as possible"})
    redis_url: str | None = field(
        default=None, metadata={"help": "write the stream here (a scratch key); default: start a local server"}
    )
    no_redis: bool = field(default=False, metadata={"help": "JSON lines file only"})
    outage: float = field(
        default=0.0, metadata={"help": "stop the bench's own Redis halfway for this many seconds, then restart it"}
    )
    request_rate: float = field(
        default=100.0, metadata={"help": "requests/s for the reported loop share (default 100)"}
    )
    json: Path | None = field(default=None, metadata={"help": "also write the results here"})


def run(options: Options, settings: Settings | None = None) -> int:
    """Settings are not used: the bench has its own Redis, file and stream key."""
    if options.outage and (options.redis_url or options.no_redis):
        raise ConfigError("--outage needs the bench's own Redis (no --redis-url, no --no-redis)")
    with tempfile.TemporaryDirectory(prefix="stopgate-bench-audit-") as tmp, contextlib.ExitStack() as stack:
        server = None
        url = None if options.no_redis else options.redis_url
        if url is None and not options.no_redis:
            server = stack.enter_context(local_redis(Path(tmp) / "redis"))
            url = server.url
        result = asyncio.run(_bench(options, Path(tmp), url, server))
    text = msgspec.json.format(msgspec.json.encode(result), indent=2).decode()
    print(text)
    if options.json:
        options.json.write_text(text + "\n")
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


def _record(i: int, run_id: str) -> AuditRecord:
    return AuditRecord(
        ts=utc_now_iso(),
        request_id=f"bench-{run_id}-{i}",
        api_key_id="key-0123456789ab",
        domain=("math", "code", "factual", "support")[i % 4],
        domain_confidence=0.87,
        policy="bench",
        policy_version=3,
        policy_hash="sha256:0f1e2d3c",
        stop_rule=("repetition", None)[i % 2],
        finish_reason="stop",
        prompt_tokens=40,
        completion_tokens=120,
        max_tokens=256,
        shadow=ShadowDecision(rule="probe", at_token=96) if i % 8 == 0 else None,
        ttft_ms=35.2,
        duration_ms=910.5,
        client_disconnected=False,
        error=None,
        reasoning_tokens=0,
        thinking_stop_rule=None,
    )


async def _bench(options: Options, tmp: Path, url: str | None, server: LocalRedis | None) -> dict[str, Any]:
    run_id = f"{time.time_ns():x}"
    key = f"stopgate:bench:{run_id}" if options.redis_url else DEFAULT_STREAM_KEY
    audit = AuditLog(tmp / "audit.jsonl", url, tmp / "spill", stream_key=key, retry_interval_s=0.25)
    await audit.start()
    n = options.records
    submit_ns: list[float] = []  # ints (ns); typed for percentile()
    interval = options.burst / options.rate if options.rate else 0.0
    outage_at = n // 2 if options.outage else -1
    restart: asyncio.Task[None] | None = None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    next_turn = wall0
    for start in range(0, n, options.burst):
        if start <= outage_at < start + options.burst and server is not None:
            server.stop()
            restart = asyncio.create_task(_restart_later(server, options.outage))
        for i in range(start, min(n, start + options.burst)):
            record = _record(i, run_id)
            t = time.perf_counter_ns()
            audit.submit(record)
            submit_ns.append(time.perf_counter_ns() - t)
        next_turn += interval
        await asyncio.sleep(max(0.0, next_turn - time.perf_counter()))
    submitted_s = time.perf_counter() - wall0
    if restart is not None:
        await restart
    while audit.pending or audit.written < n:
        await asyncio.sleep(0.01)
        if time.perf_counter() - wall0 > 600:
            break
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    counters = audit.counters()
    await audit.close()
    lines = (tmp / "audit.jsonl").read_bytes().count(b"\n")
    in_stream, distinct = lines, lines
    if url:
        in_stream, distinct = await _stream_count(url, key, scratch=options.redis_url is not None)
    cpu_us = cpu / n * 1e6
    ordered = sorted(submit_ns)
    return {
        "records": n,
        "burst": options.burst,
        "rate": options.rate or None,
        "redis": url is not None,
        "outage_s": options.outage or None,
        "submit_ns": {
            "mean": round(statistics.fmean(ordered)),
            "p50": percentile(ordered, 50),
            "p99": percentile(ordered, 99),
            "max": ordered[-1],
        },
        "submit_phase_s": round(submitted_s, 3),
        "delivered_s": round(wall, 3),
        "throughput_rps": round(n / wall),
        "loop_cpu_us_per_record": round(cpu_us, 2),
        "loop_share_at_request_rate": {
            "requests_per_s": options.request_rate,
            "pct": round(cpu_us * options.request_rate / 1e4, 4),
        },
        "counters": counters,
        "jsonl_lines": lines,
        "stream_entries": in_stream,
        "stream_distinct": distinct,
        "lost": n - min(lines, distinct),
        "duplicated": in_stream - distinct,
    }


async def _restart_later(server: LocalRedis, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await asyncio.to_thread(server.start)


async def _stream_count(url: str, key: str, scratch: bool) -> tuple[int, int]:
    sink = RedisStreamSink(url, key=key, timeout_s=30)
    try:
        entries: Any = await sink.client.xrange(key)
        ids = {fields[b"request_id"] for _, fields in entries}
        if scratch:  # a user's Redis: leave nothing behind
            await sink.client.delete(key, *[sink.seen_key(i.decode()) for i in ids])
        return len(entries), len(ids)
    finally:
        await sink.close()
