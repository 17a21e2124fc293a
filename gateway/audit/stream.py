"""The audit Redis Stream: adding records at most once per request_id, and every read of it.

Each entry has two fields: ``request_id`` and ``record`` (the sealed JSON line, the same bytes as in
the JSON lines file). Writes use a Lua script that XADDs only when ``SET NX`` on a per-request key
succeeds, so a record re-sent after an outage or a crash is never duplicated. Calls fail fast (no
client-side retries, ``gateway.redis.connect``): the writer spills and retries on its own schedule.

Reads: entry ids are the milliseconds at which Redis received an entry, never earlier than the
record's ``ts`` (records are added after their request ends, replays later still), so a ``since``
bound becomes an XREVRANGE lower bound (with slack for clock skew); the other bounds are checked on
the record. ``limit`` keeps the most recent matches; repeated request_ids are dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import msgspec

from gateway.audit.filters import AuditFilter, QueryResult, finish_result
from gateway.audit.record import AuditRecord, decode_record
from gateway.audit.sinks import Item
from gateway.redis import connect, ping

DEFAULT_STREAM_KEY = "stopgate:audit"
CLOCK_SLACK_MS = 300_000  # gateway and Redis clocks may disagree; scan this much further back
PAGE = 1000

# KEYS: the stream, then one "seen" key per record; ARGV: maxlen, ttl, then request_id, json per record.
# One call per batch: a record is added only if its seen key did not exist (SET NX), atomically.
_ADD_SCRIPT = """
local added = 0
for i = 2, #KEYS do
  local j = 2 * i - 1
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', tonumber(ARGV[2])) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'request_id', ARGV[j], 'record', ARGV[j + 1])
    added = added + 1
  end
end
return added
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _raw_record(fields: Any) -> bytes:
    raw = fields.get(b"record", fields.get("record", b""))
    return raw if isinstance(raw, bytes) else str(raw).encode()


class RedisStreamSink:
    """XADD records to a Redis Stream (approximate MAXLEN), at most once per request_id; read it back."""

    def __init__(
        self,
        url: str,
        *,
        key: str = DEFAULT_STREAM_KEY,
        maxlen: int = 100_000,
        dedup_ttl_s: int = 86_400,
        timeout_s: float = 2.0,
    ) -> None:
        self.key = key
        self.maxlen = maxlen
        self.dedup_ttl_s = dedup_ttl_s
        self.client = connect(url, timeout=timeout_s)
        self._add = self.client.register_script(_ADD_SCRIPT)

    def seen_key(self, request_id: str) -> str:
        return f"{self.key}:seen:{request_id}"

    async def ping(self) -> None:
        await self.client.ping()

    async def health(self) -> str | None:
        """``None`` when Redis answers, else why not."""
        return await ping(self.client)

    async def add_many(self, items: Sequence[Item]) -> int:
        """Add the items in one script call; returns how many were new (the rest were there already)."""
        if not items:
            return 0
        keys = [self.key, *(self.seen_key(request_id) for request_id, _ in items)]
        args: list[str | bytes | int] = [self.maxlen, self.dedup_ttl_s]
        for request_id, line in items:
            args += (request_id, line)
        return int(await self._add(keys=keys, args=args))

    async def close(self) -> None:
        await self.client.aclose()

    # ---- reads -------------------------------------------------------------------------------

    async def query(self, flt: AuditFilter) -> QueryResult:
        """Newest entries first (XREVRANGE), page by page, until ``limit`` matches or the ``since`` bound."""
        low = "-" if flt.since is None else str(_lower_bound_ms(flt.since))
        high = "+"
        seen: set[str] = set()
        out: list[AuditRecord] = []
        skipped = 0
        source = f"redis stream {self.key}"
        while True:
            entries: Any = await self.client.xrevrange(self.key, max=high, min=low, count=PAGE)
            for _, fields in entries:
                try:
                    record = decode_record(_raw_record(fields))
                except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
                    skipped += 1
                    continue
                if record.request_id in seen:
                    continue
                seen.add(record.request_id)
                if flt.matches(record):
                    out.append(record)
                    if flt.limit is not None and len(out) >= flt.limit:
                        return finish_result(out, skipped, source)
            if len(entries) < PAGE:
                return finish_result(out, skipped, source)
            high = "(" + _text(entries[-1][0])

    async def lines(self, since: datetime | None = None) -> AsyncIterator[tuple[str, bytes]]:
        """Every entry's id and record line, oldest first (XRANGE), from ``since`` (with clock slack)."""
        low = "-" if since is None else str(_lower_bound_ms(since))
        while True:
            entries: Any = await self.client.xrange(self.key, min=low, max="+", count=PAGE)
            for entry_id, fields in entries:
                yield _text(entry_id), _raw_record(fields)
            if len(entries) < PAGE:
                return
            low = "(" + _text(entries[-1][0])

    async def follow(self, flt: AuditFilter, after: str = "$") -> AsyncIterator[AuditRecord]:
        """New entries as they arrive (XREAD BLOCK), forever."""
        last = after
        while True:
            reply: Any = await self.client.xread({self.key: last}, block=2000, count=PAGE)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = _text(entry_id)
                    try:
                        record = decode_record(_raw_record(fields))
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        continue
                    if flt.matches(record):
                        yield record

    async def latest_id(self) -> str:
        """The id of the newest entry (``0-0`` for none): where a follow starts after a query."""
        newest: Any = await self.client.xrevrange(self.key, count=1)
        return _text(newest[0][0]) if newest else "0-0"


def _lower_bound_ms(since: datetime) -> int:
    return max(0, int(since.timestamp() * 1000) - CLOCK_SLACK_MS)
