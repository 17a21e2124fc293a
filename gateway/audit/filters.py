"""What to read back from the audit trail: the filter, the result, and the time bounds it takes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgspec

from gateway.audit.record import AuditRecord
from gateway.errors import RequestError

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, param: str = "since", now: datetime | None = None) -> datetime:
    """An ISO 8601 time (``Z``, an offset, or naive = UTC) or a span back from now: ``15m``, ``2h``."""
    value = text.strip()
    rel = _RELATIVE.match(value)
    if rel:
        try:
            span = timedelta(seconds=float(rel.group(1)) * _UNITS[rel.group(2)])
            return (now or datetime.now(UTC)) - span
        except (OverflowError, ValueError):
            raise RequestError(f"{param}: span out of range: {text[:64]!r}", param=param) from None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        message = f"{param}: not an ISO 8601 time or a span like 15m: {text[:64]!r}"
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


def finish_result(matches: Iterable[AuditRecord], skipped: int, source: str) -> QueryResult:
    """A result with its records in time order (ties by request_id)."""
    ordered = sorted(matches, key=lambda r: (r.ts, r.request_id))
    return QueryResult(records=ordered, skipped=skipped, source=source)
