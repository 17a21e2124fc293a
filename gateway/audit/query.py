"""Reading the audit trail back: filters over the JSON lines file (or the stream), and summaries.

The stream's own reads are ``RedisStreamSink``'s (``gateway.audit.stream``); ``read_trail`` picks the
stream when Redis answers, else the file. Both readers drop repeated request_ids (a crash between
writing the file and clearing the spill may repeat one). ``limit`` keeps the most recent matches.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from gateway.audit.filters import AuditFilter, QueryResult, finish_result, parse_time, record_time
from gateway.audit.record import AuditRecord, decode_record
from gateway.audit.stream import DEFAULT_STREAM_KEY, RedisStreamSink
from gateway.redis import REDIS_ERRORS

__all__ = ["AuditFilter", "QueryResult", "parse_time", "query_file", "read_trail", "record_time", "summary"]


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
    return finish_result(out, skipped, f"file {path}")


async def read_trail(
    redis_url: str | None, jsonl_path: Path, flt: AuditFilter, key: str = DEFAULT_STREAM_KEY
) -> QueryResult:
    """The stream when ``redis_url`` is set and answers, else the JSON lines file (with a note on stderr)."""
    if redis_url:
        sink = RedisStreamSink(redis_url, key=key)
        try:
            return await sink.query(flt)
        except REDIS_ERRORS as exc:
            print(f"stopgate: note: Redis unreachable ({exc}); reading {jsonl_path}", file=sys.stderr)
        finally:
            await sink.close()
    return await asyncio.to_thread(query_file, jsonl_path, flt)


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
