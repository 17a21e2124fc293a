"""The clients of ``stopgate bench load``: streamed chat requests with varied prompts, tallied, and the
server's resident memory sampled while they run."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from gateway.audit.query import percentile

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


class LoadOptions(Protocol):
    """What the clients read of ``stopgate bench load``'s options."""

    @property
    def streams(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def drain(self) -> float: ...
    @property
    def seed(self) -> int: ...


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


async def drive(url: str, key: str | None, pid: int | None, options: LoadOptions) -> dict[str, Any]:
    """Warm up, run ``options.streams`` clients for ``options.seconds``, let them drain: the figures."""
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
        "answered_200": tally.statuses[200] + warm.statuses[200],  # warm-up included: each one is audited
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
