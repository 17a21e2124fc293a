"""Reading the audit trail back: filters over the Redis Stream or the JSON lines file, and summaries.

Stream entry ids are the milliseconds at which Redis received them, never earlier than the record's
``ts`` (records are added after their request ends; replays after an outage later still), so a
``since`` bound turns into an XREVRANGE lower bound (with some slack for clock skew) and every
other bound is checked on the record itself. ``limit`` keeps the most recent matches. Both readers
drop repeated request_ids (a crash between writing the file and clearing the spill may repeat one).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from gateway.audit.record import AuditRecord, decode_record
from gateway.audit.sinks import DEFAULT_STREAM_KEY, REDIS_ERRORS, RedisStreamSink
from gateway.errors import RequestError

CLOCK_SLACK_MS = 300_000  # gateway and Redis clocks may disagree; scan this much further back
PAGE = 1000
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, param: str = "since", now: datetime | None = None) -> datetime:
    """An ISO 8601 time (``Z``, an offset, or naive = UTC) or a span back from now: ``15m``, ``2h``."""
    value = text.strip()
    rel = _RELATIVE.match(value)
    if rel:
        return (now or datetime.now(UTC)) - timedelta(seconds=float(rel.group(1)) * _UNITS[rel.group(2)])
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        message = f"{param}: not an ISO 8601 time or a span like 15m: {text!r}"
        raise RequestError(message, param=param) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def record_time(record: AuditRecord) -> datetime:
    return parse_time(record.ts, param="ts")


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which records to return. ``stop_rule="none"`` matches records that no rule stopped."""

    since: datetime | None = None
    until: datetime | None = None
    domain: str | None = None
    stop_rule: str | None = None
    limit: int | None = None  # the most recent N matches; None: all

    def matches(self, record: AuditRecord) -> bool:
        if self.domain is not None and record.domain != self.domain:
            return False
        if self.stop_rule is not None:
            wanted = None if self.stop_rule == "none" else self.stop_rule
            if record.stop_rule != wanted:
                return False
        if self.since is not None or self.until is not None:
            try:
                moment = record_time(record)
            except RequestError:
                return False
            if self.since is not None and moment < self.since:
                return False
            if self.until is not None and moment > self.until:
                return False
        return True


class QueryResult(msgspec.Struct, kw_only=True):
    """Matching records, oldest first; ``skipped`` counts lines or entries that were not valid records."""

    records: list[AuditRecord]
    skipped: int = 0
    source: str = ""


def _finish(matches: Iterable[AuditRecord], skipped: int, source: str) -> QueryResult:
    ordered = sorted(matches, key=lambda r: (r.ts, r.request_id))
    return QueryResult(records=ordered, skipped=skipped, source=source)


async def query_stream(client: Any, key: str, flt: AuditFilter) -> QueryResult:
    """Newest entries first (XREVRANGE), page by page, until ``limit`` matches or the ``since`` bound."""
    low = "-"
    if flt.since is not None:
        low = str(max(0, int(flt.since.timestamp() * 1000) - CLOCK_SLACK_MS))
    high = "+"
    seen: set[str] = set()
    out: list[AuditRecord] = []
    skipped = 0
    while True:
        entries = await client.xrevrange(key, max=high, min=low, count=PAGE)
        for _, fields in entries:
            raw = fields.get(b"record", fields.get("record"))
            try:
                record = decode_record(raw)
            except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
                skipped += 1
                continue
            if record.request_id in seen:
                continue
            seen.add(record.request_id)
            if flt.matches(record):
                out.append(record)
                if flt.limit is not None and len(out) >= flt.limit:
                    return _finish(out, skipped, f"redis stream {key}")
        if len(entries) < PAGE:
            return _finish(out, skipped, f"redis stream {key}")
        last = entries[-1][0]
        high = "(" + (last.decode() if isinstance(last, bytes) else str(last))


def iter_file(path: Path) -> Iterator[AuditRecord | None]:
    """Every line of a JSON lines file as a record (``None`` for a line that is not one)."""
    with path.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                yield decode_record(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                yield None


def query_file(path: Path, flt: AuditFilter) -> QueryResult:
    """The same filters over the JSON lines file (one process's records), scanning it forward."""
    if not path.exists():
        return QueryResult(records=[], source=f"file {path} (missing)")
    seen: set[str] = set()
    out: deque[AuditRecord] = deque(maxlen=flt.limit)
    skipped = 0
    for record in iter_file(path):
        if record is None:
            skipped += 1
        elif record.request_id not in seen:
            seen.add(record.request_id)
            if flt.matches(record):
                out.append(record)
    return _finish(out, skipped, f"file {path}")


async def read_trail(
    redis_url: str | None, jsonl_path: Path, flt: AuditFilter, key: str = DEFAULT_STREAM_KEY
) -> QueryResult:
    """The stream when ``redis_url`` is set and answers, else the JSON lines file (with a note on stderr)."""
    if redis_url:
        sink = RedisStreamSink(redis_url, key=key)
        try:
            return await query_stream(sink.client, key, flt)
        except REDIS_ERRORS as exc:
            print(f"stopgate: note: Redis unreachable ({exc}); reading {jsonl_path}", file=sys.stderr)
        finally:
            await sink.close()
    return await asyncio.to_thread(query_file, jsonl_path, flt)


async def follow_stream(
    redis_url: str, flt: AuditFilter, key: str = DEFAULT_STREAM_KEY, after: str = "$"
) -> AsyncIterator[AuditRecord]:
    """New stream entries as they arrive (XREAD BLOCK), forever."""
    sink = RedisStreamSink(redis_url, key=key, timeout_s=10.0)
    last = after
    try:
        while True:
            reply: Any = await sink.client.xread({key: last}, block=2000, count=PAGE)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    try:
                        record = decode_record(fields.get(b"record", b""))
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        continue
                    if flt.matches(record):
                        yield record
    finally:
        await sink.close()


async def latest_stream_id(redis_url: str, key: str = DEFAULT_STREAM_KEY) -> str:
    """The id of the newest stream entry (``0-0`` for none): where a follow starts after a query."""
    sink = RedisStreamSink(redis_url, key=key)
    try:
        newest = await sink.client.xrevrange(key, count=1)
    finally:
        await sink.close()
    if not newest:
        return "0-0"
    entry_id = newest[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def follow_file(path: Path, flt: AuditFilter, poll_s: float = 0.5) -> Iterator[AuditRecord]:
    """Records appended to the JSON lines file from now on (like ``tail -F``: survives rotation)."""
    position = path.stat().st_size if path.exists() else 0
    inode = path.stat().st_ino if path.exists() else None
    partial = b""
    while True:
        time.sleep(poll_s)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if st.st_ino != inode or st.st_size < position:  # rotated or truncated: read the new file whole
            inode, position, partial = st.st_ino, 0, b""
        if st.st_size == position:
            continue
        with path.open("rb") as f:
            f.seek(position)
            chunk = f.read()
        position += len(chunk)
        *lines, partial = (partial + chunk).split(b"\n")
        for line in lines:
            try:
                record = decode_record(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if flt.matches(record):
                yield record


# ---- summary -----------------------------------------------------------------------------------


class DomainSummary(msgspec.Struct, kw_only=True):
    """Per-domain figures. Tokens saved: ``saved_sampled`` is measured on the online quality samples
    (full length minus sent length); ``saved_estimate`` extrapolates their mean to every request, or,
    with no samples, is the budget upper bound (max_tokens minus sent, for rule-stopped requests) —
    ``saved_method`` says which ("sampled" or "budget")."""

    domain: str
    requests: int = 0
    errors: int = 0
    disconnects: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_rules: dict[str, int] = msgspec.field(default_factory=dict)
    shadow: dict[str, int] = msgspec.field(default_factory=dict)
    sampled: int = 0
    saved_sampled: int = 0
    saved_sampled_pct: float | None = None
    saved_estimate: int = 0
    saved_method: str = "budget"
    agreement: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    duration_p50_ms: float | None = None
    duration_p95_ms: float | None = None


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


ALL = "(all)"


def summary(records: Iterable[AuditRecord]) -> dict[str, DomainSummary]:
    """Per-domain summaries (domain ``None`` shows as ``-``) plus an ``(all)`` row, in name order."""
    groups: dict[str, list[AuditRecord]] = {}
    for record in records:
        groups.setdefault(record.domain or "-", []).append(record)
        groups.setdefault(ALL, []).append(record)
    return {name: _summarise(name, groups[name]) for name in sorted(groups, key=lambda n: (n == ALL, n))}


def _summarise(name: str, records: list[AuditRecord]) -> DomainSummary:
    out = DomainSummary(domain=name, requests=len(records))
    rules: Counter[str] = Counter()
    shadow: Counter[str] = Counter()
    full_sum = 0
    budget_saved = 0
    agreed = judged = 0
    for r in records:
        out.errors += r.error is not None
        out.disconnects += r.client_disconnected
        out.prompt_tokens += r.prompt_tokens
        out.completion_tokens += r.completion_tokens
        rules[r.stop_rule or "none"] += 1
        if r.shadow is not None:
            shadow[r.shadow.rule] += 1
        if r.stop_rule is not None and r.max_tokens is not None:
            budget_saved += max(0, r.max_tokens - r.completion_tokens)
        if r.full_completion_tokens is not None:
            out.sampled += 1
            full_sum += r.full_completion_tokens
            out.saved_sampled += max(0, r.full_completion_tokens - r.completion_tokens)
        if r.answer_agreed is not None:
            judged += 1
            agreed += r.answer_agreed
    out.stop_rules = dict(rules.most_common())
    out.shadow = dict(shadow.most_common())
    if out.sampled:
        out.saved_sampled_pct = round(100 * out.saved_sampled / full_sum, 2) if full_sum else 0.0
        out.saved_estimate = round(out.saved_sampled / out.sampled * out.requests)
        out.saved_method = "sampled"
    else:
        out.saved_estimate = budget_saved
    out.agreement = round(agreed / judged, 4) if judged else None
    ttfts = [r.ttft_ms for r in records if r.ttft_ms is not None]
    durations = [r.duration_ms for r in records]
    out.ttft_p50_ms, out.ttft_p95_ms = percentile(ttfts, 50), percentile(ttfts, 95)
    out.duration_p50_ms, out.duration_p95_ms = percentile(durations, 50), percentile(durations, 95)
    return out
