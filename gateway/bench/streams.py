"""Streamed chat requests as the benchmarks send them: one request read for its TTFT, tokens and gaps.

TTFT is the first chunk that carries a token's text (answer or reasoning); token counts are the
stream's usage chunk; chunks after the first token are parsed only for their inter-token gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.audit.query import percentile

PROMPTS = (
    "Write a long story about a dragon who learns to fly.",
    "Explain in detail how a steam engine works.",
    "Describe the history of the printing press.",
    "Write a letter to a friend about a trip to the mountains.",
)


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile rounded to 0.01; None for no values."""
    value = percentile(values, p)
    return None if value is None else round(value, 2)


def sub(a: float | None, b: float | None) -> float | None:
    """``a - b`` rounded to 0.01; None when either is missing."""
    return None if a is None or b is None else round(a - b, 2)


def chat_body(model: str, i: int, tokens: int) -> dict[str, Any]:
    """The ``i``-th benchmark request: greedy, streamed with usage, prompts taken in turn."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


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


async def batch(url: str, bodies: list[dict[str, Any]], headers: dict[str, str]) -> tuple[list[Sample], float]:
    """``bodies`` as concurrent streams; returns the samples and the batch's wall time."""
    limits = httpx.Limits(max_connections=len(bodies) + 4, max_keepalive_connections=len(bodies) + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10), limits=limits) as client:
        start = time.perf_counter()
        samples = await asyncio.gather(*(stream_once(client, url, b, headers) for b in bodies))
        return list(samples), time.perf_counter() - start
