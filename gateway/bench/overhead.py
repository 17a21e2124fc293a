"""``stopgate bench overhead``: what the gateway adds in front of a real engine, and its relay capacity.

1. Against ``--engine-url`` (vLLM, llama.cpp's server, SGLang, ``stopgate worker``): the same
   streamed requests sent to the engine directly and through a ``stopgate serve`` subprocess that
   has it as its remote worker, batches of N concurrent streams taken in turn (direct, gateway,
   direct, ...) for N in ``--streams``. Reported per N: TTFT p50/p99 both ways and the difference
   (TTFT added), completion tokens/s both ways and the ratio. Stopping rules are off for these
   requests (``X-Stopgate-Policy: off``): both sides must generate the same tokens.
2. Relay capacity: one gateway process in front of the synthetic upstream
   (``gateway.bench.upstream``, streams chunks with logprobs as fast as it can), shipped policies
   on, for ``--relay-streams`` concurrent clients looping requests for ``--relay-seconds``:
   tokens/s delivered, p99 inter-token gap at the client through the gateway vs from the upstream
   directly (the added inter-token latency), and the gateway's CPU time per relayed token
   (``/proc/<pid>/stat``). Clients, gateway and upstream share this machine's cores. Flat out,
   every stream waits on the gateway, so the gap measures its capacity shared by N streams;
   with ``--relay-pace-ms`` the upstream paces each stream like a real engine and the added
   gap is the latency the gateway adds below capacity.

Token counts are the streams' usage chunks; TTFT is the first chunk that carries a token's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from gateway.bench.server import serve
from gateway.errors import ConfigError
from gateway.redis_server import free_port

if TYPE_CHECKING:
    from gateway.settings import Settings

SETTINGS = ("model", "device", "data_dir")
PROMPTS = (
    "Write a long story about a dragon who learns to fly.",
    "Explain in detail how a steam engine works.",
    "Describe the history of the printing press.",
    "Write a letter to a friend about a trip to the mountains.",
)


TTFT_SAMPLES = 12
"""TTFTs per side at least, at every concurrency (one stream: twelve batches each way)."""


@dataclass(frozen=True)
class Options:
    engine_url: str | None = field(default=None, metadata={"help": "the engine to measure against (loopback)"})
    streams: str = field(default="1,8,64", metadata={"help": "concurrent streams per batch, comma-separated"})
    tokens: int = field(default=64, metadata={"help": "max_tokens per request to the engine"})
    rounds: int = field(default=3, metadata={"help": "batches each way per concurrency (one stream: >= 12)"})
    relay_streams: str = field(default="64,256", metadata={"help": "concurrent clients for the relay capacity"})
    relay_tokens: int = field(default=256, metadata={"help": "max_tokens per relay request"})
    relay_seconds: float = field(default=20.0, metadata={"help": "seconds per relay measurement"})
    relay_pace_ms: float = field(
        default=0.0, metadata={"help": "the synthetic upstream's per-stream token interval (0: as fast as it can)"}
    )
    skip_relay: bool = field(default=False, metadata={"help": "only the engine comparison"})
    force_domain: str | None = field(
        default=None, metadata={"help": "send x-stopgate-domain NAME: the gateway without the classifier"}
    )
    json: Path | None = field(default=None, metadata={"help": "write the figures here"})


def run(options: Options, settings: Settings) -> int:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="stopgate-overhead-") as tmp:
        if options.engine_url:
            _require_loopback(options.engine_url)
            figures["engine"] = _engine_comparison(options, settings, Path(tmp))
        if not options.skip_relay:
            figures["relay"] = _relay_capacity(options, settings, Path(tmp))
    print(json.dumps(figures, indent=2))
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _require_loopback(url: str) -> None:
    host = httpx.URL(url).host
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(f"--engine-url must be on loopback, not {host!r}")


def _pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile, rounded; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)], 2)


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 2)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


# -- one streamed request ------------------------------------------------------------------------


@dataclass
class Sample:
    ttft_s: float | None = None
    tokens: int = 0
    gaps_s: list[float] = field(default_factory=list)
    error: str | None = None


async def stream_once(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], gaps: bool = False
) -> Sample:
    """One streamed chat request: time to the first token's text, the usage's completion tokens,
    and (``gaps``) the time between token chunks. Chunks are parsed only until the first token."""
    sample = Sample()
    start = time.perf_counter()
    last = start
    tail = b""
    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as r:
            if r.status_code != 200:
                sample.error = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return sample
            async for raw in r.aiter_raw():
                now = time.perf_counter()
                data = tail + raw
                if sample.ttft_s is None:
                    for line in data.split(b"\n"):
                        if line.startswith(b"data: {") and _has_token(line[6:]):
                            sample.ttft_s = now - start
                            break
                elif gaps:
                    n = raw.count(b"data: ")
                    if n:
                        sample.gaps_s.append(now - last)
                        sample.gaps_s.extend([0.0] * (n - 1))
                if sample.ttft_s is not None:
                    last = now
                tail = data[-4096:]
            usage = tail.rfind(b'"completion_tokens":')
            if usage >= 0:
                digits = tail[usage + 20 :].split(b",", 1)[0].split(b"}", 1)[0]
                sample.tokens = int(digits.strip() or 0)
    except httpx.HTTPError as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    return sample


def _has_token(payload: bytes) -> bool:
    with contextlib.suppress(ValueError):
        for choice in json.loads(payload).get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"):
                return True
    return False


def _body(model: str, i: int, tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def batch(url: str, bodies: list[dict[str, Any]], headers: dict[str, str]) -> tuple[list[Sample], float]:
    """``bodies`` as concurrent streams; returns the samples and the batch's wall time."""
    limits = httpx.Limits(max_connections=len(bodies) + 4, max_keepalive_connections=len(bodies) + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10), limits=limits) as client:
        start = time.perf_counter()
        samples = await asyncio.gather(*(stream_once(client, url, b, headers) for b in bodies))
        return list(samples), time.perf_counter() - start


# -- 1. engine direct vs through the gateway -----------------------------------------------------


def _engine_comparison(options: Options, settings: Settings, tmp: Path) -> dict[str, Any]:
    engine = options.engine_url.rstrip("/") if options.engine_url else ""
    model = httpx.get(engine + "/v1/models", timeout=10).json()["data"][0]["id"]
    top = max(_ints(options.streams))
    env = {"STOPGATE_WORKER_URL": engine, "STOPGATE_MAX_CONCURRENT_STREAMS": str(max(64, top * 2))}
    out: dict[str, Any] = {"engine_url": engine, "model": model, "tokens": options.tokens}
    with serve(settings, tmp / "gateway-engine.log", env) as gw:
        off = {"x-stopgate-policy": "off", "x-stopgate-admin-key": gw.admin_key}
        if options.force_domain:
            off["x-stopgate-domain"] = options.force_domain
        warm = [_body(model, 0, 8)]
        asyncio.run(batch(engine, warm, {}))
        asyncio.run(batch(gw.url, warm, off))
        for n in _ints(options.streams):
            bodies = [_body(model, i, options.tokens) for i in range(n)]
            direct: list[tuple[list[Sample], float]] = []
            through: list[tuple[list[Sample], float]] = []
            # A TTFT p50 wants samples: one stream gets as many rounds as it takes for TTFT_SAMPLES.
            for _ in range(max(options.rounds, -(-TTFT_SAMPLES // n))):
                direct.append(asyncio.run(batch(engine, bodies, {})))
                through.append(asyncio.run(batch(gw.url, bodies, off)))
            out[f"streams_{n}"] = _compare(direct, through)
            print(f"streams={n}: {json.dumps(out[f'streams_{n}'])}", file=sys.stderr, flush=True)
    return out


def _compare(direct: list[tuple[list[Sample], float]], through: list[tuple[list[Sample], float]]) -> dict[str, Any]:
    def summary(runs: list[tuple[list[Sample], float]]) -> dict[str, Any]:
        samples = [s for run, _ in runs for s in run]
        ttfts = [s.ttft_s * 1000 for s in samples if s.ttft_s is not None]
        tokens = sum(s.tokens for s in samples)
        wall = sum(w for _, w in runs)
        return {
            "ttft_p50_ms": _pct(ttfts, 50),
            "ttft_p99_ms": _pct(ttfts, 99),
            "tok_s": round(tokens / wall, 1) if wall else 0.0,
            "tokens": tokens,
            "errors": sum(1 for s in samples if s.error),
            "first_error": next((s.error for s in samples if s.error), None),
        }

    d, g = summary(direct), summary(through)
    return {
        "direct": d,
        "gateway": g,
        "ttft_added_p50_ms": _sub(g["ttft_p50_ms"], d["ttft_p50_ms"]),
        "ttft_added_p99_ms": _sub(g["ttft_p99_ms"], d["ttft_p99_ms"]),
        "throughput_ratio": round(g["tok_s"] / d["tok_s"], 3) if d["tok_s"] else None,
    }


# -- 2. relay capacity against the synthetic upstream --------------------------------------------


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
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


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
                body = _body("synthetic", i, tokens)
                body["messages"][0]["content"] += f" (variant {i})"
                samples.append(await stream_once(client, url, body, headers, gaps=True))
                i += n

        await asyncio.gather(*(one(k) for k in range(n)))
    return samples


def _relay_capacity(options: Options, settings: Settings, tmp: Path) -> dict[str, Any]:
    top = max(_ints(options.relay_streams))
    out: dict[str, Any] = {
        "tokens_per_request": options.relay_tokens,
        "seconds": options.relay_seconds,
        "pace_ms": options.relay_pace_ms,
    }
    with synthetic_upstream(options.relay_pace_ms) as upstream:
        env = {"STOPGATE_WORKER_URL": upstream, "STOPGATE_MAX_CONCURRENT_STREAMS": str(top * 2)}
        with serve(settings, tmp / "gateway-relay.log", env) as gw:
            asyncio.run(_loop_clients(gw.url, 4, 2.0, options.relay_tokens, {}))  # warm-up
            for n in _ints(options.relay_streams):
                direct = asyncio.run(
                    _loop_clients(upstream, n, min(5.0, options.relay_seconds), options.relay_tokens, {})
                )
                cpu0, t0 = _cpu_seconds(gw.pid), time.perf_counter()
                through = asyncio.run(_loop_clients(gw.url, n, options.relay_seconds, options.relay_tokens, {}))
                cpu, wall = _cpu_seconds(gw.pid) - cpu0, time.perf_counter() - t0
                tokens = sum(s.tokens for s in through)
                gaps_d = [g * 1000 for s in direct for g in s.gaps_s]
                gaps_g = [g * 1000 for s in through for g in s.gaps_s]
                p99_d, p99_g = _pct(gaps_d, 99), _pct(gaps_g, 99)
                out[f"streams_{n}"] = {
                    "tok_s": round(tokens / wall, 1),
                    "requests": len(through),
                    "errors": sum(1 for s in through if s.error),
                    "first_error": next((s.error for s in through if s.error), None),
                    "itl_p99_direct_ms": p99_d,
                    "itl_p99_gateway_ms": p99_g,
                    "itl_p99_added_ms": _sub(p99_g, p99_d),
                    "gateway_cpu_us_per_token": round(cpu / tokens * 1e6, 1) if tokens else None,
                    "gateway_cpu_share": round(cpu / wall, 2),
                    "ttft_p50_ms": _pct([s.ttft_s * 1000 for s in through if s.ttft_s], 50),
                }
                print(f"relay streams={n}: {json.dumps(out[f'streams_{n}'])}", file=sys.stderr, flush=True)
    return out
