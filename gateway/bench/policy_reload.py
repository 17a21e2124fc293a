"""``stopgate bench policy-reload``: how fast a policy write on one replica reaches another.

Two ``PolicyStore`` instances (two replicas) share one real Redis; each update is a ``put`` on A,
timed until B's snapshot serves the new version (write + publish + B's read and validation). Also
times the request-path lookup (``store.get``) one call at a time. Keys live under a private
prefix and are deleted afterwards, so it is safe against a gateway's Redis. Targets: propagation
p99 <= 1 s, lookup p99 <= 50 us.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.audit.query import percentile
from gateway.bench.server import local_redis
from gateway.policy.records import connect
from gateway.policy.store import PolicyStore

if TYPE_CHECKING:
    from gateway.settings import Settings

DOMAINS = ("factual", "math")
_POLICIES = {
    "default": "domain: default\nmax_tokens: 512\nrules:\n  - repetition: {ngram: 8, max_repeats: 2}\n",
    "factual": "domain: factual\nmax_tokens: 256\nmin_tokens: 4\nrules:\n  - repetition: {}\n",
}


SETTINGS = ("redis_url", "data_dir")


@dataclass(frozen=True)
class Options:
    updates: int = field(default=50, metadata={"help": "policy writes to time"})
    lookups: int = field(default=100_000, metadata={"help": "store.get calls to time"})
    json: Path | None = field(default=None, metadata={"help": "write the figures here"})


async def _measure(redis_url: str, policies_dir: Path, updates: int, lookups: int) -> dict[str, Any]:
    prefix = f"stopgate:bench:{secrets.token_hex(4)}"
    a = PolicyStore(redis_url, policies_dir, DOMAINS, prefix=prefix)
    b = PolicyStore(redis_url, policies_dir, DOMAINS, prefix=prefix)
    await asyncio.gather(a.start(), b.start())
    lags: list[float] = []
    writes: list[float] = []
    missed = 0
    try:
        if not (a.healthy and b.healthy):
            raise SystemExit(f"Redis not reachable: {a.degraded_reason or b.degraded_reason}")
        for i in range(updates):
            doc = a.get("factual").document()
            doc["max_tokens"] = 200 + i % 50
            doc["description"] = f"bench update {i}"
            start = time.perf_counter()
            active = await a.put("factual", doc, source="bench")
            writes.append(time.perf_counter() - start)
            deadline = start + 5.0
            # polling is the measurement: what a request on B would see, at 0.2 ms resolution
            while b.get("factual").version < active.version and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.0002)
            if b.get("factual").version < active.version:
                missed += 1
                continue
            lags.append(time.perf_counter() - start)
        lookup_ns = []
        get = b.get
        clock = time.perf_counter_ns
        for i in range(lookups):
            domain = DOMAINS[i & 1]  # "math" has no policy of its own: the default fallback path
            t0 = clock()
            get(domain)
            lookup_ns.append(clock() - t0)
    finally:
        await asyncio.gather(a.close(), b.close())
        client = connect(redis_url)
        try:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
    ms = [x * 1000 for x in lags]
    us = [x / 1000 for x in lookup_ns]
    return {
        "updates": updates,
        "missed_after_5s": missed,
        "propagation_ms": {"p50": percentile(ms, 50), "p99": percentile(ms, 99), "max": max(ms)} if ms else None,
        "write_ms_p50": (percentile(writes, 50) or 0.0) * 1000 if writes else None,
        "lookups": lookups,
        "lookup_us": {"p50": percentile(us, 50), "p99": percentile(us, 99), "max": max(us)} if us else None,
    }


def run(options: Options, settings: Settings) -> int:
    with tempfile.TemporaryDirectory(prefix="stopgate-bench-") as tmp, contextlib.ExitStack() as stack:
        policies_dir = Path(tmp) / "policies"
        policies_dir.mkdir()
        for name, text in _POLICIES.items():
            (policies_dir / f"{name}.yaml").write_text(text)
        redis_url = settings.redis_url or stack.enter_context(local_redis(Path(tmp) / "redis")).url
        result = asyncio.run(_measure(redis_url, policies_dir, options.updates, options.lookups))
    prop, look = result["propagation_ms"], result["lookup_us"]
    if prop:
        print(
            f"propagation A->B over {options.updates - result['missed_after_5s']} updates: p50 {prop['p50']:.1f} ms, "
            f"p99 {prop['p99']:.1f} ms, max {prop['max']:.1f} ms (target p99 <= 1000 ms)"
        )
    if look:
        print(
            f"lookup over {options.lookups} calls: p50 {look['p50']:.2f} us, p99 {look['p99']:.2f} us "
            f"(target p99 <= 50 us)"
        )
    if options.json:
        options.json.write_text(json.dumps(result, indent=2) + "\n")
    ok = not result["missed_after_5s"] and prop and prop["p99"] <= 1000 and look and look["p99"] <= 50
    return 0 if ok else 1
