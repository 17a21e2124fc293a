"""``stopgate bench overhead``: what the gateway adds in front of a real engine, and its relay capacity.

1. Against ``--engine-url`` (vLLM, llama.cpp's server, SGLang, ``stopgate worker``): the same
   streamed requests sent to the engine directly and through a ``stopgate serve`` subprocess that
   has it as its remote worker, batches of N concurrent streams taken in turn (direct, gateway,
   direct, ...) for N in ``--streams``. Reported per N: TTFT p50/p99 both ways and the difference
   (TTFT added), completion tokens/s both ways and the ratio. First, ``--ttft-pairs`` one-token
   requests, direct and through the gateway in turn: the TTFT added with enough samples to show a
   few ms (p50 both ways, their difference, the mean paired difference and its standard error).
   Stopping rules are off for these requests (``X-Stopgate-Policy: off``): both sides must
   generate the same tokens.
2. Relay capacity: one gateway process in front of the synthetic upstream
   (``gateway.bench.upstream``, streams chunks with logprobs as fast as it can), shipped policies
   on, for ``--relay-streams`` concurrent clients looping requests for ``--relay-seconds``:
   tokens/s delivered, p99 inter-token gap at the client through the gateway vs from the upstream
   directly (the added inter-token latency), and the gateway's CPU time per relayed token
   (``/proc/<pid>/stat``). Clients, gateway and upstream share this machine's cores. Flat out,
   every stream waits on the gateway, so the gap measures its capacity shared by N streams;
   with ``--relay-pace-ms`` the upstream paces each stream like a real engine and the added
   gap is the latency the gateway adds below capacity.

Requests and their reading: ``gateway.bench.streams``; the relay part: ``gateway.bench.relay``.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from gateway.bench.relay import relay_capacity
from gateway.bench.server import serve
from gateway.bench.streams import Sample, batch, chat_body, pct, sub
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.settings import Settings

SETTINGS = ("model", "device", "data_dir")


TTFT_SAMPLES = 12
"""TTFTs per side at least, at every concurrency (one stream: twelve batches each way)."""


@dataclass(frozen=True)
class Options:
    engine_url: str | None = field(default=None, metadata={"help": "the engine to measure against (loopback)"})
    streams: str = field(default="1,8,64", metadata={"help": "concurrent streams per batch, comma-separated"})
    tokens: int = field(default=64, metadata={"help": "max_tokens per request to the engine"})
    rounds: int = field(default=3, metadata={"help": "batches each way per concurrency (one stream: >= 12)"})
    ttft_pairs: int = field(
        default=100, metadata={"help": "one-token requests, direct then through the gateway, for the TTFT added"}
    )
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
            figures["relay"] = relay_capacity(
                settings,
                Path(tmp),
                streams=_ints(options.relay_streams),
                tokens=options.relay_tokens,
                seconds=options.relay_seconds,
                pace_ms=options.relay_pace_ms,
            )
    print(json.dumps(figures, indent=2))
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _require_loopback(url: str) -> None:
    host = httpx.URL(url).host
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(f"--engine-url must be on loopback, not {host!r}")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


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
        warm = [chat_body(model, 0, 8)]
        asyncio.run(batch(engine, warm, {}))
        asyncio.run(batch(gw.url, warm, off))
        if options.ttft_pairs:
            out["ttft_pairs"] = asyncio.run(_ttft_pairs(engine, gw.url, off, model, options.ttft_pairs))
            print(f"ttft_pairs: {json.dumps(out['ttft_pairs'])}", file=sys.stderr, flush=True)
        for n in _ints(options.streams):
            bodies = [chat_body(model, i, options.tokens) for i in range(n)]
            direct: list[tuple[list[Sample], float]] = []
            through: list[tuple[list[Sample], float]] = []
            # A TTFT p50 wants samples: one stream gets as many rounds as it takes for TTFT_SAMPLES.
            for _ in range(max(options.rounds, -(-TTFT_SAMPLES // n))):
                direct.append(asyncio.run(batch(engine, bodies, {})))
                through.append(asyncio.run(batch(gw.url, bodies, off)))
            out[f"streams_{n}"] = _compare(direct, through)
            print(f"streams={n}: {json.dumps(out[f'streams_{n}'])}", file=sys.stderr, flush=True)
    return out


async def _ttft_pairs(engine: str, gateway: str, headers: dict[str, str], model: str, pairs: int) -> dict[str, Any]:
    """The TTFT added, from one-token requests one at a time: direct, then through the gateway, ``pairs``
    times. A CPU engine's TTFT spreads over tens of ms from one request to the next, so a few-ms
    difference needs many samples; pairs taken in turn also cancel a drift of the engine's speed."""
    direct: list[float] = []
    through: list[float] = []
    body = [chat_body(model, 0, 1)]
    for _ in range(pairs):
        (d,), _ = await batch(engine, body, {})
        (g,), _ = await batch(gateway, body, headers)
        if d.ttft_s is not None and g.ttft_s is not None:
            direct.append(d.ttft_s * 1000)
            through.append(g.ttft_s * 1000)
    diffs = [g - d for d, g in zip(direct, through, strict=True)]
    d50, g50 = pct(direct, 50), pct(through, 50)
    return {
        "pairs": len(diffs),
        "direct_p50_ms": d50,
        "gateway_p50_ms": g50,
        "ttft_added_p50_ms": sub(g50, d50),
        "added_mean_ms": round(statistics.fmean(diffs), 2) if diffs else None,
        "added_mean_se_ms": round(statistics.stdev(diffs) / math.sqrt(len(diffs)), 2) if len(diffs) > 1 else None,
    }


def _compare(direct: list[tuple[list[Sample], float]], through: list[tuple[list[Sample], float]]) -> dict[str, Any]:
    def summary(runs: list[tuple[list[Sample], float]]) -> dict[str, Any]:
        samples = [s for run, _ in runs for s in run]
        ttfts = [s.ttft_s * 1000 for s in samples if s.ttft_s is not None]
        tokens = sum(s.tokens for s in samples)
        wall = sum(w for _, w in runs)
        return {
            "ttft_p50_ms": pct(ttfts, 50),
            "ttft_p99_ms": pct(ttfts, 99),
            "tok_s": round(tokens / wall, 1) if wall else 0.0,
            "tokens": tokens,
            "errors": sum(1 for s in samples if s.error),
            "first_error": next((s.error for s in samples if s.error), None),
        }

    d, g = summary(direct), summary(through)
    return {
        "direct": d,
        "gateway": g,
        "ttft_added_p50_ms": sub(g["ttft_p50_ms"], d["ttft_p50_ms"]),
        "ttft_added_p99_ms": sub(g["ttft_p99_ms"], d["ttft_p99_ms"]),
        "throughput_ratio": round(g["tok_s"] / d["tok_s"], 3) if d["tok_s"] else None,
    }
