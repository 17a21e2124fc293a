"""Relay capacity: one gateway process in front of the synthetic upstream (``gateway.bench.upstream``).

Part 2 of ``stopgate bench overhead``: shipped policies on, N clients looping streamed requests;
tokens/s delivered, the p99 inter-token gap through the gateway against the upstream's own, and the
gateway's CPU time per relayed token (``/proc/<pid>/stat``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from gateway.bench.server import serve, stop
from gateway.bench.streams import Sample, chat_body, pct, stream_once, sub
from gateway.errors import ConfigError
from gateway.redis_server import free_port

if TYPE_CHECKING:
    from gateway.settings import Settings


@contextlib.contextmanager
def synthetic_upstream(token_interval_ms: float = 0.0) -> Iterator[str]:
    """``gateway.bench.upstream`` in its own process on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.bench.upstream",
            "--port",
            str(port),
            "--token-interval-ms",
            str(token_interval_ms),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise ConfigError("the synthetic upstream did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc, grace_s=10)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _loop_clients(url: str, n: int, seconds: float, tokens: int, headers: dict[str, str]) -> list[Sample]:
    """``n`` clients each looping streamed requests until ``seconds`` are up."""
    limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=n + 4)
    deadline = time.perf_counter() + seconds
    samples: list[Sample] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10), limits=limits) as client:

        async def one(k: int) -> None:
            i = k
            while time.perf_counter() < deadline:
                body = chat_body("synthetic", i, tokens)
                body["messages"][0]["content"] += f" (variant {i})"
                samples.append(await stream_once(client, url, body, headers, gaps=True))
                i += n

        await asyncio.gather(*(one(k) for k in range(n)))
    return samples


def relay_capacity(
    settings: Settings, tmp: Path, *, streams: list[int], tokens: int, seconds: float, pace_ms: float
) -> dict[str, Any]:
    """The figures per number of concurrent clients in ``streams``."""
    top = max(streams)
    out: dict[str, Any] = {
        "tokens_per_request": tokens,
        "seconds": seconds,
        "pace_ms": pace_ms,
    }
    with synthetic_upstream(pace_ms) as upstream:
        env = {"STOPGATE_WORKER_URL": upstream, "STOPGATE_MAX_CONCURRENT_STREAMS": str(top * 2)}
        with serve(settings, tmp / "gateway-relay.log", env) as gw:
            asyncio.run(_loop_clients(gw.url, 4, 2.0, tokens, {}))  # warm-up
            for n in streams:
                direct = asyncio.run(_loop_clients(upstream, n, min(5.0, seconds), tokens, {}))
                cpu0, t0 = _cpu_seconds(gw.pid), time.perf_counter()
                through = asyncio.run(_loop_clients(gw.url, n, seconds, tokens, {}))
                cpu, wall = _cpu_seconds(gw.pid) - cpu0, time.perf_counter() - t0
                tokens = sum(s.tokens for s in through)
                gaps_d = [g * 1000 for s in direct for g in s.gaps_s]
                gaps_g = [g * 1000 for s in through for g in s.gaps_s]
                p99_d, p99_g = pct(gaps_d, 99), pct(gaps_g, 99)
                out[f"streams_{n}"] = {
                    "tok_s": round(tokens / wall, 1),
                    "requests": len(through),
                    "errors": sum(1 for s in through if s.error),
                    "first_error": next((s.error for s in through if s.error), None),
                    "itl_p99_direct_ms": p99_d,
                    "itl_p99_gateway_ms": p99_g,
                    "itl_p99_added_ms": sub(p99_g, p99_d),
                    "gateway_cpu_us_per_token": round(cpu / tokens * 1e6, 1) if tokens else None,
                    "gateway_cpu_share": round(cpu / wall, 2),
                    "ttft_p50_ms": pct([s.ttft_s * 1000 for s in through if s.ttft_s], 50),
                }
                print(f"relay streams={n}: {json.dumps(out[f'streams_{n}'])}", file=sys.stderr, flush=True)
    return out
