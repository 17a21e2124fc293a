"""The audit trail against a real Redis: records reach the stream once, survive outages and restarts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from gateway.audit import stream as audit_stream
from gateway.audit.log import AuditLog
from gateway.audit.query import AuditFilter
from gateway.audit.record import AuditRecord, decode_record, utc_now_iso
from gateway.cli import audit as audit_cli
from gateway.redis_server import LocalRedis, free_port
from tests.audit_records import build_record

STREAM = "stopgate:audit"


def make(request_id: str, domain: str = "math", stop_rule: str | None = None) -> AuditRecord:
    """A record stamped now (the stream queries below bound ``since``), in ``domain`` and its policy."""
    return build_record(
        request_id, ts=utc_now_iso(), domain=domain, policy=domain, policy_version=3, stop_rule=stop_rule
    )


async def until(cond: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def stream_ids(url: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [fields["request_id"] for _, fields in client.xrange(STREAM)]
    finally:
        client.close()


def new_log(tmp_path: Path, url: str | None, **kw) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl", url, tmp_path / "spill", retry_interval_s=0.1, redis_timeout_s=1.0, **kw)


async def test_records_reach_the_stream_with_request_id_as_a_value(tmp_path, redis_url):
    """Each record is one stream entry: request_id and the record's JSON as field values."""
    audit = new_log(tmp_path, redis_url)
    await audit.start()
    for i in range(20):
        audit.submit(make(f"r{i}", domain="code" if i % 2 else "math"))
    await until(lambda: audit.written == 20)
    assert audit.healthy
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    entries = client.xrange(STREAM)
    client.close()
    assert [f["request_id"] for _, f in entries] == [f"r{i}" for i in range(20)]
    assert decode_record(entries[0][1]["record"]).policy_version == 3
    since = datetime.now(UTC) - timedelta(minutes=1)
    result = await audit.query(AuditFilter(since=since, domain="code", limit=3))
    await audit.close()
    assert result.source.startswith("redis stream")
    assert [r.request_id for r in result.records] == ["r15", "r17", "r19"]


async def test_the_same_request_is_added_once(tmp_path, redis_url):
    """Submitting a record twice (a replay) leaves one stream entry and counts a duplicate."""
    audit = new_log(tmp_path, redis_url)
    await audit.start()
    rec = make("same")
    audit.submit(rec)
    await until(lambda: audit.written == 1)
    audit.submit(rec)
    await until(lambda: audit.written == 2)
    await audit.close()
    assert stream_ids(redis_url) == ["same"] and audit.duplicates == 1


async def test_redis_outage_loses_and_duplicates_nothing(tmp_path, redis_url, redis_server: LocalRedis):
    """Redis stopped mid-load and started again on the same port: every record in the stream once, chain intact."""
    # The records from before the outage survive because LocalRedis saves on shutdown (--save);
    # the ones submitted during it are what the audit log itself must not lose.
    audit = new_log(tmp_path, redis_url)
    await audit.start()
    try:
        for i in range(50):
            audit.submit(make(f"r{i}"))
        await until(lambda: audit.written == 50)
        redis_server.stop()
        for i in range(50, 100):
            audit.submit(make(f"r{i}"))
            if i % 10 == 0:
                await asyncio.sleep(0.05)
        await until(lambda: audit.spilled >= 50)
        assert not audit.healthy and "redis unreachable" in (audit.degraded_reason or "")
        redis_server.start()
        await until(lambda: audit.healthy and audit.pending == 0)
    finally:
        if not redis_server.running:
            redis_server.start()
        await audit.close()
    ids = stream_ids(redis_url)
    assert sorted(ids) == sorted(f"r{i}" for i in range(100))
    assert len(ids) == len(set(ids)) == 100
    assert audit.counters()["written"] == 100
    # The spill kept the chain: file and stream both verify, in delivery order.
    from gateway.audit.verify import verify_file, verify_stream

    assert verify_file(tmp_path / "audit.jsonl").ok
    streamed = await verify_stream(redis_url)
    assert streamed.ok and streamed.records == 100, streamed.summary()


async def test_spill_survives_a_crashed_process(tmp_path, redis_url):
    """A process that spilled while Redis was down and then died: the next AuditLog delivers its records."""
    dead_url = f"redis://127.0.0.1:{free_port()}/0"
    script = textwrap.dedent(f"""
        import asyncio, os
        from pathlib import Path
        from gateway.audit.log import AuditLog
        from gateway.audit.record import AuditDraft

        async def main():
            audit = AuditLog(Path({str(tmp_path / "old.jsonl")!r}), {dead_url!r},
                             Path({str(tmp_path / "spill")!r}), redis_timeout_s=0.5)
            await audit.start()
            for i in range(10):
                audit.submit(AuditDraft(request_id=f"old{{i}}").finish())
            while audit.spilled < 10:
                await asyncio.sleep(0.01)
            os._exit(0)  # no close(): a crash

        asyncio.run(main())
    """)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert list((tmp_path / "spill").glob("stream-*.jsonl"))
    audit = new_log(tmp_path, redis_url)
    await audit.start()
    await until(lambda: audit.pending == 0 and audit.written == 10)
    await audit.close()
    assert sorted(stream_ids(redis_url)) == sorted(f"old{i}" for i in range(10))
    assert list((tmp_path / "spill").glob("*.jsonl")) == []


async def test_stream_query_pages_and_filters(tmp_path, redis_url, monkeypatch):
    """Queries walk the stream newest first page by page; filters and limit apply across pages."""
    monkeypatch.setattr(audit_stream, "PAGE", 3)
    audit = new_log(tmp_path, redis_url)
    await audit.start()
    for i in range(20):
        audit.submit(make(f"r{i:02d}", stop_rule="repetition" if i % 3 == 0 else None))
    await until(lambda: audit.written == 20)
    rule = await audit.query(AuditFilter(stop_rule="repetition"))
    recent = await audit.query(AuditFilter(stop_rule="none", limit=4))
    await audit.close()
    assert [r.request_id for r in rule.records] == [f"r{i:02d}" for i in range(0, 20, 3)]
    assert [r.request_id for r in recent.records] == ["r14", "r16", "r17", "r19"]


async def test_stream_is_capped_by_maxlen(tmp_path, redis_url):
    """XADD trims approximately to stream_maxlen."""
    audit = new_log(tmp_path, redis_url, stream_maxlen=10)
    await audit.start()
    for i in range(400):
        audit.submit(make(f"r{i}"))
    await until(lambda: audit.written == 400)
    await audit.close()
    assert len(stream_ids(redis_url)) <= 10 + 200  # approximate: whole nodes are dropped


async def test_cli_query_reads_the_stream(tmp_path, redis_url, monkeypatch, capsys):
    """`stopgate audit query --format json` with STOPGATE_REDIS_URL prints the stream's records."""
    audit = new_log(tmp_path, redis_url)
    await audit.start()
    audit.submit(make("via-cli", domain="factual"))
    await until(lambda: audit.written == 1)
    await audit.close()
    (tmp_path / "audit.jsonl").unlink()  # prove the answer comes from Redis
    monkeypatch.setenv("STOPGATE_REDIS_URL", redis_url)
    monkeypatch.setenv("STOPGATE_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    parser = argparse.ArgumentParser()
    audit_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["audit", "query", "--since", "5m", "--format", "json"])
    with ThreadPoolExecutor(1) as pool:
        assert await asyncio.wrap_future(pool.submit(args.handler, args)) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["request_id"] for x in lines] == ["via-cli"] and lines[0]["domain"] == "factual"


async def test_closing_with_redis_down_keeps_records_for_later(tmp_path, redis_url, redis_server):
    """close() during an outage leaves the stream's share on disk; a later AuditLog delivers it."""
    n = 3
    audit = new_log(tmp_path, redis_url)
    await audit.start()
    try:
        redis_server.stop()
        for i in range(n):
            audit.submit(make(f"late{i}"))
        await audit.close()
    finally:
        if not redis_server.running:
            redis_server.start()
    again = new_log(tmp_path, redis_url)
    await again.start()
    await until(lambda: again.pending == 0 and again.written == n)
    await again.close()
    assert sorted(stream_ids(redis_url)) == sorted(f"late{i}" for i in range(n))


async def test_verify_walks_the_stream_and_finds_a_removed_entry(tmp_path, redis_url):
    """The stream holds the sealed lines: it verifies, and an XDEL'd entry is reported as missing."""
    from gateway.audit.verify import verify_stream

    audit = new_log(tmp_path, redis_url)
    await audit.start()
    for i in range(5):
        audit.submit(build_record(f"v{i}"))
    await audit.close()
    result = await verify_stream(redis_url)
    assert result.ok and result.records == 5, result.summary()
    client = redis.Redis.from_url(redis_url)
    entries = client.xrange("stopgate:audit")
    client.xdel("stopgate:audit", entries[2][0])
    client.close()
    result = await verify_stream(redis_url)
    assert not result.ok and "missing" in (result.problem or "")
