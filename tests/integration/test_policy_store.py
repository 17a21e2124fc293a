"""Two PolicyStore replicas on one real Redis: propagation, strictness, history, and Redis outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import redis

from gateway.errors import DefinitionError, RequestError, StoreUnavailable, UnknownDomain
from gateway.policy.records import PolicyRecords, connect
from gateway.policy.store import PolicyStore
from gateway.redis_server import LocalRedis, free_port
from tests.integration.policy_files import DOMAINS, FILES, eventually, write_policies


@pytest.fixture()
def policies_dir(tmp_path: Path) -> Path:
    return write_policies(tmp_path)


# Its own key space: the session's gateway (other test modules) runs a store on the same Redis and
# would re-seed the default prefix with its own versions after the outage tests below.
PREFIX = "test:policy-store"


@pytest.fixture()
async def replicas(redis_url: str, policies_dir: Path) -> AsyncIterator[tuple[PolicyStore, PolicyStore]]:
    a = PolicyStore(redis_url, policies_dir, DOMAINS, prefix=PREFIX)
    b = PolicyStore(redis_url, policies_dir, DOMAINS, prefix=PREFIX)
    await asyncio.gather(a.start(), b.start())
    assert a.healthy and b.healthy, (a.degraded_reason, b.degraded_reason)
    yield a, b
    await asyncio.gather(a.close(), b.close())


def edited(store: PolicyStore, domain: str = "factual", **changes: object) -> dict[str, object]:
    return {**store.get(domain).document(), **changes}


async def test_two_replicas_starting_together_seed_each_domain_once(replicas: tuple[PolicyStore, PolicyStore]) -> None:
    """Seeding is atomic: one version per file, the same on both replicas."""
    a, b = replicas
    assert [v.source for v in await a.history("factual")] == ["seed:files"]
    assert a.get("factual").version == b.get("factual").version == 1
    assert a.get("factual").hash == b.get("factual").hash


async def test_put_on_one_replica_is_visible_on_the_other_within_a_second(
    replicas: tuple[PolicyStore, PolicyStore],
) -> None:
    """A write on A reaches B (new version, identical document and hash) well within 1 s."""
    a, b = replicas
    start = time.monotonic()
    written = await a.put("factual", edited(a, max_tokens=200))
    lag = await eventually(lambda: b.get("factual").version == written.version, within=1.0)
    assert time.monotonic() - start < 1.0, lag
    assert b.get("factual").document() == written.document()
    assert b.get("factual").hash == written.hash and b.get("factual").policy.max_tokens == 200


async def test_invalid_document_never_changes_the_active_version(replicas: tuple[PolicyStore, PolicyStore]) -> None:
    """Unknown keys, bad values or another domain's document are refused and nothing moves."""
    a, b = replicas
    before = a.get("factual")
    for bad in (edited(a, bogus_field_xyz=1), edited(a, max_tokens=0), edited(a, domain="math"), {"x": 1}):
        with pytest.raises(DefinitionError):
            await a.put("factual", bad)
    with pytest.raises(UnknownDomain):
        await a.put("sports", edited(a))
    await asyncio.sleep(0.1)
    assert a.get("factual") is before
    assert b.get("factual").version == before.version
    assert len(await a.history("factual")) == 1


async def test_lookup_is_an_in_process_dict_lookup(replicas: tuple[PolicyStore, PolicyStore]) -> None:
    """get() needs no Redis round trip: p99 of single lookups is far below 50 us."""
    a, _ = replicas
    samples = []
    for i in range(20_000):
        t0 = time.perf_counter_ns()
        a.get("factual" if i % 2 else "math")
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    assert samples[int(len(samples) * 0.99)] < 50_000


async def test_domain_without_a_policy_falls_back_to_default(replicas: tuple[PolicyStore, PolicyStore]) -> None:
    """A domain with no policy of its own gets the default policy."""
    a, _ = replicas
    assert a.get("math").policy.domain == "default"
    assert a.snapshot.own("math") is None


async def test_a_request_keeps_the_snapshot_it_started_with(replicas: tuple[PolicyStore, PolicyStore]) -> None:
    """A write replaces the snapshot object; one already held does not change."""
    a, _ = replicas
    pinned = a.snapshot
    held = pinned.get("factual")
    await a.put("factual", edited(a, max_tokens=100))
    assert a.snapshot is not pinned
    assert pinned.get("factual") is held and held.policy.max_tokens == 256
    assert a.get("factual").policy.max_tokens == 100


async def test_history_keeps_at_least_twenty_versions_newest_first(
    replicas: tuple[PolicyStore, PolicyStore],
) -> None:
    """Versions only grow, and at least the last 20 are kept with their documents."""
    a, _ = replicas
    for i in range(25):
        await a.put("factual", edited(a, max_tokens=100 + i))
    history = await a.history("factual")
    versions = [v.version for v in history]
    assert len(history) >= 20 and versions == sorted(versions, reverse=True)
    assert versions[0] == 26 and history[0].document["max_tokens"] == 124


async def test_rollback_is_a_new_version_with_the_old_document(replicas: tuple[PolicyStore, PolicyStore]) -> None:
    """Rolling back writes a new version whose content equals the old one, on every replica."""
    a, b = replicas
    original = a.get("factual")
    await a.put("factual", edited(a, max_tokens=99))
    back = await a.rollback("factual", original.version)
    assert back.version == 3 and back.hash == original.hash
    assert back.policy.with_version(1) == original.policy
    await eventually(lambda: b.get("factual").version == 3)
    assert (await a.history("factual"))[0].source == "rollback:v1"
    with pytest.raises(RequestError, match="no version 42"):
        await a.rollback("factual", 42)


async def test_reload_from_files_pushes_only_changed_documents(
    replicas: tuple[PolicyStore, PolicyStore], policies_dir: Path
) -> None:
    """Re-reading the files writes the domains whose content changed, and only those."""
    a, b = replicas
    (policies_dir / "factual.yaml").write_text(FILES["factual.yaml"].replace("256", "128"))
    changed = await a.reload_from_files()
    assert list(changed) == ["factual"]
    await eventually(lambda: b.get("factual").policy.max_tokens == 128)
    assert await a.reload_from_files() == {}


async def test_invalid_files_on_reload_change_nothing(
    replicas: tuple[PolicyStore, PolicyStore], policies_dir: Path
) -> None:
    """A broken file makes reload fail with every problem; the active versions stay."""
    a, _ = replicas
    (policies_dir / "factual.yaml").write_text("domain: factual\nmax_tokens: 10\nwat: 1\n")
    with pytest.raises(DefinitionError, match="wat"):
        await a.reload_from_files()
    assert a.get("factual").version == 1


async def test_a_missed_invalidation_is_repaired_by_the_periodic_resync(redis_url: str, policies_dir: Path) -> None:
    """Pub/sub is only a hint: a write whose message B never sees still reaches B."""
    b = PolicyStore(redis_url, policies_dir, DOMAINS, resync_interval=0.3)
    await b.start()
    client = connect(redis_url)
    try:
        records = PolicyRecords(client)
        records.channel = "nobody-listens-here"
        policy = msgspec.structs.replace(b.get("factual").policy, max_tokens=77)
        written = await records.write(policy, source="test")
        assert written is not None
        await eventually(lambda: b.get("factual").version == written.version, within=3.0)
        assert b.get("factual").policy.max_tokens == 77
    finally:
        await client.aclose()
        await b.close()


async def test_never_reached_redis_serves_the_files_and_refuses_writes(policies_dir: Path) -> None:
    """With no Redis at all the replica serves its files, says why it is degraded, and refuses writes."""
    store = PolicyStore(f"redis://127.0.0.1:{free_port()}/0", policies_dir, DOMAINS, start_timeout=2.0)
    await store.start()
    try:
        assert not store.healthy and "unreachable" in (store.degraded_reason or "")
        assert store.get("factual").source == "files" and store.get("factual").policy.max_tokens == 256
        assert store.status()["state"] == "degraded"
        with pytest.raises(StoreUnavailable, match="read-only"):
            await store.put("factual", edited(store, max_tokens=9))
        with pytest.raises(StoreUnavailable):
            await store.history("factual")
    finally:
        await store.close()


async def test_redis_restart_under_two_replicas(
    replicas: tuple[PolicyStore, PolicyStore], redis_server: LocalRedis
) -> None:
    """Redis down: both serve last-known-good, report degraded, refuse writes; back up: resync, writes flow."""
    a, b = replicas
    await a.put("factual", edited(a, max_tokens=111))
    await eventually(lambda: b.get("factual").policy.max_tokens == 111)
    try:
        redis_server.stop()
        await eventually(lambda: not a.healthy and not b.healthy, within=5.0)
        assert "unreachable" in (b.degraded_reason or "")
        assert b.get("factual").policy.max_tokens == 111 and b.get("factual").source == "redis"
        with pytest.raises(StoreUnavailable):
            await a.put("factual", edited(a, max_tokens=5))
    finally:
        if not redis_server.running:
            redis_server.start()
    await eventually(lambda: a.healthy and b.healthy, within=10.0)
    assert a.get("factual").policy.max_tokens == 111
    written = await a.put("factual", edited(a, max_tokens=222))
    await eventually(lambda: b.get("factual").version == written.version, within=1.0)


async def test_redis_back_empty_is_reseeded_without_versions_going_back(
    replicas: tuple[PolicyStore, PolicyStore], redis_server: LocalRedis
) -> None:
    """If Redis loses its data, replicas write back their last-known-good at the same version."""
    a, b = replicas
    for tokens in (300, 301, 302):
        last = await a.put("factual", edited(a, max_tokens=tokens))
    await eventually(lambda: b.get("factual").version == last.version)
    try:
        redis_server.stop()
        (redis_server.data_dir / "dump.rdb").unlink(missing_ok=True)
        await eventually(lambda: not a.healthy and not b.healthy, within=5.0)
    finally:
        if not redis_server.running:
            redis_server.start()
    await eventually(lambda: a.healthy and b.healthy, within=10.0)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        assert int(raw.hget(f"{PREFIX}:factual:active", "version") or 0) == last.version
    finally:
        raw.close()
    assert b.get("factual").version == last.version and b.get("factual").hash == last.hash
    newer = await a.put("factual", edited(a, max_tokens=303))
    assert newer.version == last.version + 1


async def test_redis_arriving_after_start_is_seeded_from_the_files(policies_dir: Path, tmp_path: Path) -> None:
    """A replica that started without Redis connects when it appears, seeds it and turns healthy."""
    port = free_port()
    store = PolicyStore(f"redis://127.0.0.1:{port}/0", policies_dir, DOMAINS, start_timeout=1.0)
    await store.start()
    late = LocalRedis(tmp_path / "late-redis", port=port)
    try:
        assert not store.healthy
        late.start()
        await eventually(lambda: store.healthy, within=10.0)
        assert store.get("factual").source == "redis" and store.get("factual").version == 1
        assert [v.source for v in await store.history("factual")] == ["seed:files"]
    finally:
        await store.close()
        late.stop()
