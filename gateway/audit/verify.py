"""``stopgate audit verify``: walk the JSON lines file (and the Redis Stream) along every writer's chain.

A line is judged on its bytes (``gateway.audit.chain``): edited content breaks its hash, a removed,
inserted or moved line breaks the next link of its writer. The first problem is reported with the
line number (file) or entry id (stream) and the record's request_id; a clean walk reports how many
records and writers it checked. ``since`` starts the walk at a time (chains may then begin mid-way).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gateway.audit.chain import ChainCheck
from gateway.audit.filters import parse_time
from gateway.audit.stream import DEFAULT_STREAM_KEY, RedisStreamSink

_TS = re.compile(rb'"ts":"([^"]{1,64})"')
_RID = re.compile(rb'"request_id":"([^"\\]{1,128})"')


@dataclass
class VerifyResult:
    """What one walk found: ``problem`` is ``None`` for an intact trail."""

    source: str
    records: int = 0
    writers: int = 0
    legacy: int = 0
    problem: str | None = None
    started_mid: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.problem is not None:
            return f"{self.source}: {self.problem}"
        text = f"ok {self.records} records ({self.writers} writer{'s' if self.writers != 1 else ''}) in {self.source}"
        notes = []
        if self.legacy:
            notes.append(f"{self.legacy} older lines without a hash before the chained ones")
        if self.started_mid:
            notes.append(f"{len(self.started_mid)} chain(s) begin after their start (window, trimmed or rotated)")
        return text + (f"; {'; '.join(notes)}" if notes else "")


def _before(line: bytes, since: datetime | None) -> bool:
    """Whether a line's record is older than ``since`` (lines without a readable ts are kept)."""
    if since is None:
        return False
    m = _TS.search(line)
    if m is None:
        return False
    try:
        return parse_time(m.group(1).decode(), param="ts") < since
    except Exception:
        return False


def _request_id(line: bytes) -> str:
    m = _RID.search(line)
    return m.group(1).decode() if m else "?"


class _Walk:
    """Feeds lines to a ``ChainCheck`` and keeps the first problem in the result."""

    def __init__(self, result: VerifyResult, check: ChainCheck, since: datetime | None) -> None:
        self.result, self.check, self.since = result, check, since

    def feed(self, where: str, line: bytes) -> bool:
        """False once a problem is found (stop walking)."""
        if not line.strip() or _before(line, self.since):
            return True
        problem = self.check.feed(line)
        if problem is not None:
            self.result.problem = f"{where} (request_id {_request_id(line)}): {problem}"
            return False
        return True

    def done(self) -> VerifyResult:
        r, c = self.result, self.check
        r.records, r.legacy, r.writers, r.started_mid = c.records, c.legacy, len(c.heads), dict(c.started_mid)
        return r


def _file_lines(path: Path) -> Iterator[tuple[str, bytes]]:
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            yield f"line {number}", line.rstrip(b"\r\n")


def verify_file(path: Path, *, since: datetime | None = None, partial: bool = False) -> VerifyResult:
    """Walk the JSON lines file front to back."""
    result = VerifyResult(source=f"file {path}")
    if not path.exists():
        result.problem = "no such file"
        return result
    walk = _Walk(result, ChainCheck(partial=partial or since is not None), since)
    for where, line in _file_lines(path):
        if not walk.feed(where, line):
            break
    return walk.done()


async def verify_stream(
    redis_url: str, *, key: str = DEFAULT_STREAM_KEY, since: datetime | None = None
) -> VerifyResult:
    """Walk the Redis Stream oldest first. Its start may be trimmed (MAXLEN), so chains may begin mid-way."""
    result = VerifyResult(source=f"redis stream {key}")
    walk = _Walk(result, ChainCheck(partial=True), since)
    sink = RedisStreamSink(redis_url, key=key, timeout_s=10.0)
    try:
        async for entry_id, line in sink.lines(since):
            if not walk.feed(f"entry {entry_id}", line):
                break
    finally:
        await sink.close()
    return walk.done()
