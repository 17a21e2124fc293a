"""``stopgate bench load``: N concurrent streaming clients for T seconds against a gateway on loopback.

Without ``--url`` it starts its own ``stopgate serve`` (with its own Redis, audit log and API key)
on a free loopback port and stops it afterwards. Each client loops streamed chat requests with
varied prompts until the time is up; requests in flight then finish (bounded by ``--drain``).

Reported: completed requests, responses by status, 5xx, error frames inside 200 streams, client
errors (timeouts, resets), completion tokens/s, TTFT p50/p99, and the server's RSS after warm-up,
at its peak and after the run (``/proc/<pid>/status`` VmRSS), with the growth in percent.
Targets (issue 8): zero 5xx, RSS growth <= 5 %.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import random
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from gateway.audit.query import percentile
from gateway.bench.server import local_redis, serve
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.settings import Settings

MAX_STREAMS = 512
MAX_SECONDS = 3600
RSS_GROWTH_TARGET_PCT = 5.0

# Prompt templates across the domains; filled with varying values so no two requests are alike.
TEMPLATES = (
    "What is {a} times {b}? Show the steps.",
    "A shop sells pencils at {a} cents each. How much do {b} pencils cost in dollars?",
    "Write a Python function that returns the sum of the first {a} square numbers.",
    "Explain what a hash map is, in {a} sentences.",
    "Which planet is number {n} from the sun?",
    "Name {n} rivers in Europe and the countries they flow through.",
    "My order #{a}{b} has not arrived after {n} days. What can I do?",
    "How do I change the e-mail address on my account?",
    "Hello! Could you tell me a short joke about the number {a}?",
    "Give me {n} ideas for a weekend trip on a small budget.",
)


SETTINGS = ("model", "device", "data_dir", "max_batch_size")


@dataclass(frozen=True)
class Options:
    streams: int = field(default=16, metadata={"help": f"concurrent streaming clients (<= {MAX_STREAMS})"})
    seconds: float = field(default=60, metadata={"help": f"how long clients start requests (<= {MAX_SECONDS})"})
    max_tokens: int = field(default=64, metadata={"help": "max_tokens of every request"})
    url: str | None = field(default=None, metadata={"help": "a running gateway on loopback (default: start one)"})
    api_key: str | None = field(default=None, metadata={"help": "the API key for --url"})
    pid: int | None = field(default=None, metadata={"help": "the --url gateway's process id, for RSS"})
    drain: float = field(default=180, metadata={"help": "seconds in-flight requests get to finish"})
    seed: int = field(default=0, metadata={"help": "prompt variation seed"})
    json: Path | None = field(default=None, metadata={"help": "write the figures here"})


def run(options: Options, settings: Settings) -> int:
    _check_bounds(options)
    if options.url:
        _require_loopback(options.url)
        figures = asyncio.run(_load(options.url.rstrip("/"), options.api_key, options.pid, options))
    else:
        with _own_gateway(options, settings) as (url, key, pid):
            figures = asyncio.run(_load(url, key, pid, options))
    _print(figures)
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _check_bounds(options: Options) -> None:
    if not 1 <= options.streams <= MAX_STREAMS:
        raise ConfigError(f"--streams must be between 1 and {MAX_STREAMS}")
    if not 0 < options.seconds <= MAX_SECONDS:
        raise ConfigError(f"--seconds must be in (0, {MAX_SECONDS}]")
    if options.max_tokens < 1:
        raise ConfigError("--max-tokens must be >= 1")


def _require_loopback(url: str) -> None:
    """A load generator aimed elsewhere would be a denial of service: loopback only."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"bench load only targets loopback addresses, not {host!r}")


# -- the gateway under test ------------------------------------------------------------------------


@contextlib.contextmanager
def _own_gateway(options: Options, settings: Settings) -> Iterator[tuple[str, str, int]]:
    """``stopgate serve`` on a free loopback port with its own Redis and audit log; yields url, key, pid."""
    key = "bench-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="stopgate-load-") as tmp, local_redis(Path(tmp) / "redis") as redis:
        env = {
            "STOPGATE_REDIS_URL": redis.url,
            "STOPGATE_API_KEYS": key,
            "STOPGATE_AUDIT_LOG": str(Path(tmp) / "audit.jsonl"),
            "STOPGATE_MAX_BATCH_SIZE": str(settings.max_batch_size),
            # Room above the client count: a client may open its next stream a moment before the
            # server has released the previous one.
            "STOPGATE_MAX_CONCURRENT_STREAMS": str(options.streams * 2),
        }
        with serve(settings, Path(tmp) / "gateway.log", env) as gateway:
            yield gateway.url, key, gateway.pid


def rss_bytes(pid: int | None) -> int | None:
    """Resident set size of a process from ``/proc/<pid>/status`` (None where unavailable)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


# -- the clients -----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients saw, added up."""

    statuses: Counter[int] = field(default_factory=Counter)
    client_errors: Counter[str] = field(default_factory=Counter)
    error_frames: int = 0
    completed: int = 0
    tokens: int = 0
    ttft_ms: list[float] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def prompt(rng: random.Random) -> str:
    template = rng.choice(TEMPLATES)
    return template.format(a=rng.randint(2, 999), b=rng.randint(2, 99), n=rng.randint(2, 8))


async def _load(url: str, key: str | None, pid: int | None, options: Options) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    limits = httpx.Limits(max_connections=options.streams + 4, max_keepalive_connections=options.streams + 4)
    timeout = httpx.Timeout(connect=10, read=options.drain + 60, write=30, pool=options.drain + 60)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout) as client:
        model = (await client.get("/v1/models")).raise_for_status().json()["data"][0]["id"]
        rss_start = rss_bytes(pid)
        # Warm-up: one request per client, so start-up allocations (batch buffers, caches) are made
        # before the RSS baseline is taken.
        warm = Tally()
        rng = random.Random(options.seed)
        await asyncio.gather(
            *(_request(client, model, prompt(rng), options.max_tokens, warm) for _ in range(options.streams))
        )
        rss_before = rss_bytes(pid)
        peak = [rss_before or 0]
        sampler = asyncio.create_task(_sample_rss(pid, peak))
        tally = Tally()
        started = time.monotonic()
        deadline = started + options.seconds
        clients = [
            asyncio.create_task(
                _client(client, model, random.Random(f"{options.seed}/{i}"), options.max_tokens, deadline, tally)
            )
            for i in range(options.streams)
        ]
        _done, late = await asyncio.wait(clients, timeout=options.seconds + options.drain)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        wall = time.monotonic() - started
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    await asyncio.sleep(1.0)  # let the server finish closing the last streams before the last sample
    rss_after = rss_bytes(pid)
    growth = (rss_after - rss_before) / rss_before * 100 if rss_before and rss_after else None
    return {
        "streams": options.streams,
        "seconds": options.seconds,
        "max_tokens": options.max_tokens,
        "wall_s": round(wall, 2),
        "requests_completed": tally.completed,
        "responses_by_status": {str(k): v for k, v in sorted(tally.statuses.items())},
        "server_errors_5xx": tally.server_errors,
        "error_frames": tally.error_frames,
        "client_errors": dict(tally.client_errors),
        "cut_at_drain": len(late),
        "warmup_server_errors_5xx": warm.server_errors,
        "completion_tokens": tally.tokens,
        "tokens_per_s": round(tally.tokens / wall, 2) if wall > 0 else 0.0,
        "ttft_p50_ms": _round(percentile(tally.ttft_ms, 50)),
        "ttft_p99_ms": _round(percentile(tally.ttft_ms, 99)),
        "rss_start_mb": _mb(rss_start),
        "rss_before_mb": _mb(rss_before),
        "rss_peak_mb": _mb(peak[0] or None),
        "rss_after_mb": _mb(rss_after),
        "rss_growth_pct": _round(growth),
    }


async def _client(
    client: httpx.AsyncClient, model: str, rng: random.Random, max_tokens: int, deadline: float, tally: Tally
) -> None:
    while time.monotonic() < deadline:
        await _request(client, model, prompt(rng), max_tokens, tally)


async def _request(client: httpx.AsyncClient, model: str, text: str, max_tokens: int, tally: Tally) -> None:
    """One streamed chat request; counts its status, TTFT, tokens and any error frame."""
    body = {
        "model": model,
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
    }
    t0 = time.perf_counter()
    first: float | None = None
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            tally.statuses[response.status_code] += 1
            if response.status_code != 200:
                await response.aread()
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    tally.error_frames += 1
                    continue
                choice = chunk["choices"][0] if chunk.get("choices") else {}
                if first is None and choice.get("delta", {}).get("content"):
                    first = time.perf_counter()
                if choice.get("finish_reason"):
                    tally.tokens += int(chunk.get("stopgate", {}).get("completion_tokens", 0))
            tally.completed += 1
            if first is not None:
                tally.ttft_ms.append((first - t0) * 1000)
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        tally.client_errors[type(exc).__name__] += 1


async def _sample_rss(pid: int | None, peak: list[int]) -> None:
    while pid is not None:
        peak[0] = max(peak[0], rss_bytes(pid) or 0)
        await asyncio.sleep(1.0)


def _mb(value: int | None) -> float | None:
    return round(value / 2**20, 1) if value else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _print(figures: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"stopgate bench load ({figures['streams']} streams, {figures['seconds']:g} s)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    growth = figures["rss_growth_pct"]
    targets = {
        "server_errors_5xx": ("0", figures["server_errors_5xx"] == 0),
        "rss_growth_pct": (f"<= {RSS_GROWTH_TARGET_PCT:g}", growth is not None and growth <= RSS_GROWTH_TARGET_PCT),
    }
    for name, value in figures.items():
        shown = json.dumps(value) if isinstance(value, dict) else ("n/a" if value is None else f"{value:g}")
        target = ""
        if name in targets:
            text, met = targets[name]
            target = f"{text} {'[green]ok[/]' if met else '[red]missed[/]'}"
        table.add_row(name, shown, target)
    Console().print(table)
