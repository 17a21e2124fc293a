"""AuditLog without a reachable Redis: never blocks or raises, never drops, spills to disk instead."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

from gateway.audit.log import AuditLog
from gateway.audit.query import AuditFilter
from gateway.redis_server import free_port


def ids_in(path: Path) -> list[str]:
    return [json.loads(x)["request_id"] for x in path.read_text().splitlines()] if path.exists() else []


async def wait_for(cond, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_file_only_log_writes_every_record(tmp_path, make_record):
    """Without Redis each submitted record becomes one line of the JSON lines file."""
    audit = AuditLog(tmp_path / "audit.jsonl", None, tmp_path / "spill")
    await audit.start()
    for i in range(50):
        audit.submit(make_record(f"r{i}"))
    await audit.close()
    assert ids_in(tmp_path / "audit.jsonl") == [f"r{i}" for i in range(50)]
    assert audit.counters()["written"] == 50 and audit.pending == 0


async def test_full_queue_spills_instead_of_dropping(tmp_path, make_record):
    """Past queue_size, submit() parks records on disk; the writer still delivers all, once each."""
    audit = AuditLog(tmp_path / "audit.jsonl", None, tmp_path / "spill", queue_size=4)
    for i in range(10):  # not started: nothing drains the queue yet
        audit.submit(make_record(f"r{i}"))
    assert audit.spilled == 6 and audit.pending == 10
    await audit.start()
    await wait_for(lambda: audit.pending == 0)
    await audit.close()
    assert sorted(ids_in(tmp_path / "audit.jsonl")) == sorted(f"r{i}" for i in range(10))


async def test_submit_is_cheap_and_never_raises(tmp_path, make_record):
    """submit() returns in microseconds and swallows even a malformed record."""
    audit = AuditLog(tmp_path / "audit.jsonl", None, tmp_path / "spill")
    await audit.start()
    rec = make_record()
    t = time.perf_counter()
    for _ in range(1000):
        audit.submit(rec)
    per_call = (time.perf_counter() - t) / 1000
    audit.submit(object())  # type: ignore[arg-type]
    await audit.close()
    assert per_call < 50e-6
    assert audit.failed == 1


async def test_submit_from_another_thread(tmp_path, make_record):
    """A record submitted from a worker thread reaches the file too."""
    audit = AuditLog(tmp_path / "audit.jsonl", None, tmp_path / "spill")
    await audit.start()
    t = threading.Thread(target=audit.submit, args=(make_record("from-thread"),))
    t.start()
    t.join()
    await wait_for(lambda: audit.written == 1)
    await audit.close()
    assert ids_in(tmp_path / "audit.jsonl") == ["from-thread"]


async def test_unreachable_redis_degrades_and_keeps_records_on_disk(tmp_path, make_record):
    """Redis down: health says why, the file still gets every record, the stream's share waits on disk."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    audit = AuditLog(tmp_path / "audit.jsonl", url, tmp_path / "spill", retry_interval_s=0.05, redis_timeout_s=0.5)
    await audit.start()
    assert not audit.healthy and "redis unreachable" in (audit.degraded_reason or "")
    for i in range(5):
        audit.submit(make_record(f"r{i}"))
    await wait_for(lambda: audit.spilled == 5)
    await asyncio.sleep(0.2)  # a few reconnect attempts
    assert audit.pending == 5 and audit.written == 0
    await audit.close()
    assert len(ids_in(tmp_path / "audit.jsonl")) == 5
    segments = (tmp_path / "spill").glob("stream-*.jsonl")
    assert sum(len(seg.read_text().splitlines()) for seg in segments) == 5


async def test_records_left_by_a_closed_log_are_delivered_by_the_next(tmp_path, make_record):
    """Records submitted before start or after close wait on disk; the next AuditLog writes them."""
    first = AuditLog(tmp_path / "audit.jsonl", None, tmp_path / "spill")
    first.submit(make_record("before-start"))
    await first.close()  # never started: the queue goes to disk
    first.submit(make_record("after-close"))
    assert ids_in(tmp_path / "audit.jsonl") == []
    second = AuditLog(tmp_path / "audit.jsonl", None, tmp_path / "spill")
    await second.start()
    await wait_for(lambda: second.pending == 0)
    await second.close()
    assert sorted(ids_in(tmp_path / "audit.jsonl")) == ["after-close", "before-start"]
    assert list((tmp_path / "spill").glob("*.jsonl")) == []


async def test_query_reads_the_file_without_redis(tmp_path, make_record):
    """query() filters the JSON lines file when no Redis is configured."""
    audit = AuditLog(tmp_path / "audit.jsonl", None, tmp_path / "spill")
    await audit.start()
    audit.submit(make_record("m", domain="math"))
    audit.submit(make_record("c", domain="code"))
    await wait_for(lambda: audit.written == 2)
    result = await audit.query(AuditFilter(domain="code"))
    await audit.close()
    assert [r.request_id for r in result.records] == ["c"]
