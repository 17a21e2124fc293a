"""Autopilot on a real Redis: the bounded sample store, tuning into a new version, rollback, status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.autopilot.runner import AutopilotRunner
from gateway.autopilot.samples import Sample, SampleStore, SampleToken
from gateway.policy.loader import parse_policy
from gateway.policy.records import PolicyRecords, connect

# Their own key spaces: the session's gateway runs on the same Redis with the default prefixes.
SAMPLES, POLICIES, STATE = "test:ap:samples", "test:ap:policy", "test:ap:state"
DOMAINS = ["small_talk", "math"]
ANSWER = " ".join(f"Sentence number {i} says something {i}." for i in range(1, 7))


def tokens(text: str) -> tuple[SampleToken, ...]:
    words = text.split(" ")
    return tuple(SampleToken(i, w + (" " if i < len(words) - 1 else ""), -0.1) for i, w in enumerate(words))


def sample(i: int, version: int, *, stopped_at: int | None = None, ts: float | None = None) -> Sample:
    return Sample(
        domain="small_talk",
        policy_version=version,
        policy_hash="h",
        request_id=f"r{version}-{i}",
        ts=time.time() if ts is None else ts,
        max_tokens=128,
        events=tokens(ANSWER),
        stopped_at=stopped_at,
        stop_rule="sentences" if stopped_at is not None else None,
    )


def small_talk(rules: list[dict[str, Any]], **extra: Any) -> Any:
    doc = {
        "domain": "small_talk",
        "max_tokens": 128,
        "rules": rules,
        "sample_full_rate": 1.0,
        "autopilot": {"target_agreement": 0.8, "min_samples": 12},
        **extra,
    }
    doc = {k: v for k, v in doc.items() if v is not None}
    return parse_policy(doc, source="test", domains=DOMAINS, expect_domain="small_talk")


@pytest.fixture()
async def parts(redis_url: str) -> AsyncIterator[tuple[PolicyRecords, SampleStore, AutopilotRunner]]:
    client = connect(redis_url)
    records = PolicyRecords(client, POLICIES)
    store = SampleStore(redis_url, max_samples=50, max_age_s=3600, prefix=SAMPLES)
    runner = AutopilotRunner(records, store, DOMAINS, interval_s=900, tune_every=4, prefix=STATE)
    await store.start()
    yield records, store, runner
    await store.close()
    await client.aclose()


async def drained(store: SampleStore, samples: list[Sample]) -> None:
    for s in samples:
        store.submit(s)
    for _ in range(100):
        if store.written + store.dropped >= len(samples):
            return
        await asyncio.sleep(0.05)


async def test_samples_are_bounded_in_count_and_age(redis_url: str) -> None:
    """Submitted samples come back oldest first, trimmed to the newest max_samples and max_age_s; total counts all."""
    store = SampleStore(redis_url, max_samples=5, max_age_s=60, prefix=SAMPLES + ":bounds")
    await store.start()
    try:
        old = sample(99, 1, ts=time.time() - 120)
        await drained(store, [old] + [sample(i, 1, ts=time.time() + i * 1e-3) for i in range(8)])
        held = await store.read("small_talk")
        assert [s.request_id for s in held] == [f"r1-{i}" for i in range(3, 8)]
        assert held[0].events == tokens(ANSWER)
        counts = await store.counts(["small_talk", "math"])
        assert counts["small_talk"].held == 5 and counts["small_talk"].total == 9
        assert counts["math"].held == 0 and counts["math"].total == 0
    finally:
        await store.close()


async def test_submit_never_blocks_when_redis_is_gone() -> None:
    """With Redis unreachable, submit returns at once and the samples are counted as dropped."""
    store = SampleStore("redis://127.0.0.1:1/0", prefix=SAMPLES)
    await store.start()
    try:
        started = time.perf_counter()
        for i in range(10):
            store.submit(sample(i, 1))
        assert time.perf_counter() - started < 0.05
        for _ in range(100):
            if store.dropped >= 10:
                break
            await asyncio.sleep(0.05)
        assert store.dropped == 10 and store.written == 0
    finally:
        await store.close(drain_s=0.1)


async def test_runner_writes_a_tuned_version_with_evidence(
    parts: tuple[PolicyRecords, SampleStore, AutopilotRunner],
) -> None:
    """20 samples of a loose policy: one tick writes a cheaper version, source autopilot, evidence in history."""
    records, store, runner = parts
    await records.write(small_talk([{"sentences": {"max": 8}}], autopilot=None), source="seed:files")
    loose = await records.write(small_talk([{"sentences": {"max": 8}}]), source="admin")
    assert loose is not None
    await drained(store, [sample(i, loose.version) for i in range(20)])
    reports = await runner.tick()
    assert [r["action"] for r in reports] == ["apply"]
    history = await records.history("small_talk")
    newest = history[0]
    assert newest.source == "autopilot" and newest.version == loose.version + 1
    assert newest.evidence is not None and newest.evidence["samples"] == 20
    assert newest.evidence["agreement_lower_bound"] >= 0.8 and newest.evidence["tokens_saved_pct"] > 20
    assert await runner.tick() == []  # nothing new to tune on
    status = {s["domain"]: s for s in await runner.status()}
    st = status["small_talk"]
    assert st["samples_held"] == 20 and st["last_change"]["version"] == newest.version
    assert st["current"]["meets_target"] and status["math"]["autopilot"] is None


async def test_runner_rolls_back_a_version_whose_fresh_samples_fall_below(
    parts: tuple[PolicyRecords, SampleStore, AutopilotRunner],
) -> None:
    """A pushed one-sentence policy loses the answers' opening on its fresh samples: rolled back to the loose one."""
    records, store, runner = parts
    loose = await records.write(small_talk([{"sentences": {"max": 8}}]), source="autopilot")
    aggressive = await records.write(
        small_talk([{"sentences": {"max": 1}}], autopilot={"target_agreement": 0.8, "min_samples": 16}),
        source="admin",
    )
    assert loose is not None and aggressive is not None
    one_sentence = 6  # "Sentence number 1 says something 1."
    await drained(store, [sample(i, aggressive.version, stopped_at=one_sentence) for i in range(20)])
    reports = await runner.tick()
    assert [r["action"] for r in reports] == ["rollback"]
    newest = (await records.history("small_talk"))[0]
    assert newest.source == f"autopilot:rollback:v{loose.version}"
    assert newest.document["rules"] == [{"sentences": {"max": 8}}]
    assert newest.evidence is not None and newest.evidence["fresh"]["agreement_lower_bound"] < 0.8


async def test_propose_then_apply(parts: tuple[PolicyRecords, SampleStore, AutopilotRunner]) -> None:
    """propose writes no version, only a proposal; apply writes it as the next version."""
    records, store, runner = parts
    loose = await records.write(small_talk([{"sentences": {"max": 8}}]), source="seed:files")
    assert loose is not None
    await drained(store, [sample(i, loose.version) for i in range(20)])
    report = await runner.run_domain("small_talk", mode="propose", force=True)
    assert report is not None and report["action"] == "propose"
    assert (await records.read("small_talk")).version == loose.version  # type: ignore[union-attr]
    applied = await runner.apply_proposal("small_talk")
    newest = (await records.history("small_talk"))[0]
    assert newest.version == applied["version"] == loose.version + 1 and newest.source == "autopilot:approved"
