"""``stopgate bench audit``: what auditing costs the request path, and whether an outage loses records.

Submits synthetic records the way finished requests would (bursts of ``--burst``, the event loop free
in between), then waits until every record is in the JSON lines file and the Redis Stream. Reports
the cost of ``submit()`` per call, the loop CPU time per record (submit + encode + file + stream),
end-to-end throughput, and the loop share at a given request rate. ``--outage S`` stops the bench's
own Redis halfway for S seconds and checks that the stream ends with every record exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from gateway.audit.log import AuditLog
from gateway.audit.record import AuditRecord, ShadowDecision, utc_now_iso
from gateway.audit.stream import DEFAULT_STREAM_KEY, RedisStreamSink
from gateway.bench.server import local_redis
from gateway.errors import ConfigError
from gateway.redis_server import LocalRedis


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=20_000, help="records to submit (default 20000)")
    parser.add_argument("--burst", type=int, default=32, help="records submitted per loop turn (default 32)")
    parser.add_argument("--rate", type=float, default=0.0, help="records per second; 0: as fast as possible")
    parser.add_argument(
        "--redis-url",
        default=None,
        help="write the stream here (a scratch key); default: start a local server",
    )
    parser.add_argument("--no-redis", action="store_true", help="JSON lines file only")
    parser.add_argument(
        "--outage",
        type=float,
        default=0.0,
        help="stop the bench's own Redis halfway for this many seconds, then restart it",
    )
    parser.add_argument(
        "--request-rate",
        type=float,
        default=100.0,
        help="requests/s for the reported loop share (default 100)",
    )
    parser.add_argument("--json", dest="json_out", default=None, help="also write the results here")


def run(args: argparse.Namespace) -> int:
    if args.outage and (args.redis_url or args.no_redis):
        raise ConfigError("--outage needs the bench's own Redis (no --redis-url, no --no-redis)")
    with tempfile.TemporaryDirectory(prefix="stopgate-bench-audit-") as tmp, contextlib.ExitStack() as stack:
        server = None
        url = None if args.no_redis else args.redis_url
        if url is None and not args.no_redis:
            server = stack.enter_context(local_redis(Path(tmp) / "redis"))
            url = server.url
        result = asyncio.run(_bench(args, Path(tmp), url, server))
    text = msgspec.json.format(msgspec.json.encode(result), indent=2).decode()
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
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


async def _bench(args: argparse.Namespace, tmp: Path, url: str | None, server: LocalRedis | None) -> dict[str, Any]:
    run_id = f"{time.time_ns():x}"
    key = f"stopgate:bench:{run_id}" if args.redis_url else DEFAULT_STREAM_KEY
    audit = AuditLog(tmp / "audit.jsonl", url, tmp / "spill", stream_key=key, retry_interval_s=0.25)
    await audit.start()
    n = args.records
    submit_ns: list[int] = []
    interval = args.burst / args.rate if args.rate else 0.0
    outage_at = n // 2 if args.outage else -1
    restart: asyncio.Task[None] | None = None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    next_turn = wall0
    for start in range(0, n, args.burst):
        if start <= outage_at < start + args.burst and server is not None:
            server.stop()
            restart = asyncio.create_task(_restart_later(server, args.outage))
        for i in range(start, min(n, start + args.burst)):
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
        in_stream, distinct = await _stream_count(url, key, scratch=args.redis_url is not None)
    cpu_us = cpu / n * 1e6
    ordered = sorted(submit_ns)
    return {
        "records": n,
        "burst": args.burst,
        "rate": args.rate or None,
        "redis": url is not None,
        "outage_s": args.outage or None,
        "submit_ns": {
            "mean": round(statistics.fmean(ordered)),
            "p50": ordered[len(ordered) // 2],
            "p99": ordered[int(len(ordered) * 0.99)],
            "max": ordered[-1],
        },
        "submit_phase_s": round(submitted_s, 3),
        "delivered_s": round(wall, 3),
        "throughput_rps": round(n / wall),
        "loop_cpu_us_per_record": round(cpu_us, 2),
        "loop_share_at_request_rate": {
            "requests_per_s": args.request_rate,
            "pct": round(cpu_us * args.request_rate / 1e4, 4),
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
