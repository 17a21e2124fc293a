"""``stopgate audit tail|query|summary|verify``: read and check the audit trail.

Reads the Redis Stream when ``STOPGATE_REDIS_URL`` (or ``--redis-url``) is set, else the JSON lines
file ``STOPGATE_AUDIT_LOG``. ``--format json`` prints one record per line on stdout. ``verify`` walks
the file's hash chains, and the stream's too when ``STOPGATE_REDIS_URL`` is set: exit 1 at the first
edited, missing or reordered record.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from gateway.audit.query import (
    AuditFilter,
    DomainSummary,
    follow_file,
    parse_time,
    read_trail,
    summary,
)
from gateway.audit.record import AuditRecord, encode_record
from gateway.audit.stream import RedisStreamSink
from gateway.audit.verify import verify_file, verify_stream
from gateway.cli.common import add_settings_flags, settings_from_args
from gateway.errors import RequestError, StoreUnavailable
from gateway.redis import REDIS_ERRORS
from gateway.settings import Settings

_FLAGS = ("redis_url", "audit_log")


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="read the audit trail (Redis stream, else the file)")
    sub = audit.add_subparsers(dest="audit_command", required=True)

    tail = sub.add_parser("tail", help="the latest records; --follow keeps printing new ones")
    tail.add_argument("-n", "--lines", type=int, default=10, help="recent records to show first (default 10)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing records as they arrive")
    _filter_flags(tail, since=False)
    tail.add_argument("--format", choices=("json", "table"), default="json")
    add_settings_flags(tail, only=_FLAGS)
    tail.set_defaults(handler=run_tail)

    query = sub.add_parser("query", help="records matching filters")
    _filter_flags(query, since=True)
    query.add_argument("--limit", type=int, default=None, help="at most N records, the most recent")
    query.add_argument(
        "--format", choices=("json", "table"), default="table", help="json: one record per line (JSON lines)"
    )
    add_settings_flags(query, only=_FLAGS)
    query.set_defaults(handler=run_query)

    summ = sub.add_parser("summary", help="per-domain requests, tokens, savings, stop rules, latency")
    _filter_flags(summ, since=True)
    summ.add_argument("--format", choices=("json", "table"), default="table")
    add_settings_flags(summ, only=_FLAGS)
    summ.set_defaults(handler=run_summary)

    verify = sub.add_parser(
        "verify", help="check the hash chains: exit 1 at the first edited, missing or reordered record"
    )
    verify.add_argument("--since", help="start at this time (ISO 8601 or a span: 15m, 2h); chains may begin mid-way")
    verify.add_argument("--file", help="the JSON lines file to walk (default STOPGATE_AUDIT_LOG)")
    verify.add_argument(
        "--partial", action="store_true", help="the file may begin mid-chain (a rotated file's later part)"
    )
    add_settings_flags(verify, only=_FLAGS)
    verify.set_defaults(handler=run_verify)


def _filter_flags(parser: argparse.ArgumentParser, *, since: bool) -> None:
    if since:
        parser.add_argument("--since", help="ISO 8601 time (2026-05-01T12:00:00Z) or a span: 15m, 2h, 7d")
        parser.add_argument("--until", help="ISO 8601 time or a span back from now")
    parser.add_argument("--domain", help="only this domain")
    parser.add_argument("--stop-rule", dest="stop_rule", help="only this stop rule ('none': no rule fired)")


def _filter(args: argparse.Namespace, limit: int | None) -> AuditFilter:
    since = getattr(args, "since", None)
    until = getattr(args, "until", None)
    if limit is not None and limit < 1:
        raise RequestError(f"--limit/--lines must be >= 1, not {limit}")
    return AuditFilter(
        since=parse_time(since, param="--since") if since else None,
        until=parse_time(until, param="--until") if until else None,
        domain=args.domain,
        stop_rule=args.stop_rule,
        limit=limit,
    )


def _redis_url(settings: Settings) -> str | None:
    return settings.redis_url or None


def _fetch(settings: Settings, flt: AuditFilter) -> list[AuditRecord]:
    result = asyncio.run(read_trail(_redis_url(settings), settings.audit_log, flt))
    if result.skipped:
        note = f"skipped {result.skipped} entries that are not audit records ({result.source})"
        print(f"stopgate: note: {note}", file=sys.stderr)
    return result.records


def run_query(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    records = _fetch(settings, _filter(args, args.limit))
    _print(records, args.format)
    return 0


def run_tail(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    flt = _filter(args, args.lines)
    url = _redis_url(settings)
    start_after = None
    if url and args.follow:
        try:
            start_after = asyncio.run(_latest_id(url))
        except REDIS_ERRORS as exc:
            note = f"Redis unreachable ({exc}); following {settings.audit_log}"
            print(f"stopgate: note: {note}", file=sys.stderr)
    records = _fetch(settings, flt)
    _print(records, args.format)
    if not args.follow:
        return 0
    follow = AuditFilter(domain=flt.domain, stop_rule=flt.stop_rule)
    printed = {r.request_id for r in records}
    if url and start_after is not None:
        try:
            asyncio.run(_follow_stream(url, follow, start_after, printed, args.format))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"lost the Redis audit stream: {exc}") from exc
    else:
        for record in follow_file(settings.audit_log, follow):
            _print([record], args.format)
    return 0


async def _latest_id(url: str) -> str:
    sink = RedisStreamSink(url)
    try:
        return await sink.latest_id()
    finally:
        await sink.close()


async def _follow_stream(url: str, flt: AuditFilter, after: str, printed: set[str], fmt: str) -> None:
    sink = RedisStreamSink(url, timeout_s=10.0)
    try:
        async for record in sink.follow(flt, after=after):
            if record.request_id not in printed:  # the query may already have shown it
                _print([record], fmt)
    finally:
        await sink.close()


def run_verify(args: argparse.Namespace) -> int:
    """Walk the file, then the stream (only with an explicit STOPGATE_REDIS_URL / --redis-url)."""
    settings = settings_from_args(args)
    since = parse_time(args.since, param="--since") if args.since else None
    path = Path(args.file) if args.file else settings.audit_log
    results = [verify_file(path, since=since, partial=args.partial)]
    # Only a configured URL: a local server found on disk may hold another gateway's trail.
    url = args.setting_redis_url or os.environ.get("STOPGATE_REDIS_URL", "")
    if url and results[0].ok:
        try:
            results.append(asyncio.run(verify_stream(url, since=since)))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"cannot read the Redis audit stream: {exc}") from exc
    for result in results:
        print(result.summary(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if all(r.ok for r in results) else 1


def run_summary(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    table = summary(_fetch(settings, _filter(args, None)))
    if args.format == "json":
        sys.stdout.write(msgspec.json.encode(list(table.values())).decode() + "\n")
    else:
        _summary_table(table.values())
    return 0


# ---- rendering -----------------------------------------------------------------------------------


def _print(records: list[AuditRecord], fmt: str) -> None:
    if fmt == "json":
        out = sys.stdout
        for record in records:
            out.write(encode_record(record).decode() + "\n")
        out.flush()
        return
    from rich.table import Table

    table = Table("ts", "request_id", "domain", "policy", "stop_rule", "finish", "tokens", "ttft ms", "dur ms", "notes")
    for r in records:
        notes = []
        if r.client_disconnected:
            notes.append("disconnected")
        if r.error is not None:
            notes.append(f"error {r.error.type}")
        if r.shadow is not None:
            notes.append(f"shadow {r.shadow.rule}@{r.shadow.at_token}")
        policy = f"{r.policy}@v{r.policy_version}" if r.policy else "-"
        table.add_row(
            r.ts,
            r.request_id,
            r.domain or "-",
            policy,
            r.stop_rule or "-",
            r.finish_reason or "-",
            f"{r.completion_tokens}/{r.max_tokens if r.max_tokens is not None else '-'}",
            _ms(r.ttft_ms),
            _ms(r.duration_ms),
            ", ".join(notes),
        )
    _console().print(table)


def _summary_table(rows: Iterable[DomainSummary]) -> None:
    from rich.table import Table

    table = Table(
        "domain",
        "requests",
        "prompt tok",
        "completion tok",
        "saved (est.)",
        "sampled",
        "agreement",
        "stop rules",
        "shadow",
        "ttft p50/p95",
        "dur p50/p95",
        "err/disc",
        caption="saved: 'sampled' = measured on full-length samples and extrapolated; "
        "'budget' = max_tokens minus sent, for rule-stopped requests (an upper bound)",
    )
    for s in rows:
        saved = f"{s.saved_estimate} ({s.saved_method})"
        if s.saved_sampled_pct is not None:
            saved += f" {s.saved_sampled_pct:.1f}%"
        table.add_row(
            s.domain,
            str(s.requests),
            str(s.prompt_tokens),
            str(s.completion_tokens),
            saved,
            str(s.sampled),
            "-" if s.agreement is None else f"{s.agreement:.0%}",
            ", ".join(f"{k} {v}" for k, v in s.stop_rules.items()),
            ", ".join(f"{k} {v}" for k, v in s.shadow.items()) or "-",
            f"{_ms(s.ttft_p50_ms)}/{_ms(s.ttft_p95_ms)}",
            f"{_ms(s.duration_p50_ms)}/{_ms(s.duration_p95_ms)}",
            f"{s.errors}/{s.disconnects}",
        )
    _console().print(table)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _console() -> Any:
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)
