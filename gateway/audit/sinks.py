"""Where audit records go: the JSON lines file, the Redis Stream, and the on-disk spill.

Records travel as ``(request_id, json_bytes)`` pairs, encoded once. ``JsonLinesSink`` appends them
with one ``write(2)`` per batch (``O_APPEND``: lines from several processes never interleave).
``RedisStreamSink`` adds them with a Lua script that XADDs only when ``SET NX`` on a per-request key
succeeds, so a record re-sent after an outage or a crash is never duplicated. ``SpillStore`` keeps
records on disk while they cannot be delivered, in segment files each owned (``flock``) by one
process; segments whose owner is gone are picked up by the next process.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

REDIS_ERRORS = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)
"""What an unreachable or failing Redis raises."""

Item = tuple[str, bytes]
"""One encoded record: its request_id and its JSON (no newline)."""

DEFAULT_STREAM_KEY = "stopgate:audit"


class _RequestId(msgspec.Struct):
    request_id: str


_id_decoder = msgspec.json.Decoder(_RequestId)


def item_from_line(line: bytes) -> Item:
    """Rebuild an item from a spilled JSON line (raises ``msgspec.DecodeError`` if it is not one)."""
    return _id_decoder.decode(line).request_id, line


def _write_lines(fd: int, items: Sequence[Item]) -> None:
    """Append the items' lines with one write(2) (more only if the kernel takes part of it)."""
    view = memoryview(b"".join(line + b"\n" for _, line in items))
    while view:
        view = view[os.write(fd, view) :]


class JsonLinesSink:
    """The audit JSON lines file: one record per line, written straight to the kernel (no buffering)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        st = os.fstat(self._fd)
        self._inode = (st.st_dev, st.st_ino)

    def write(self, items: Sequence[Item]) -> None:
        if not items:
            return
        self._reopen_if_rotated()
        assert self._fd is not None
        _write_lines(self._fd, items)

    def _reopen_if_rotated(self) -> None:
        # logrotate may have moved the file away: keep writing to the path, not the old inode.
        if self._fd is None:
            self.open()
            return
        try:
            st = os.stat(self.path)
            moved = (st.st_dev, st.st_ino) != self._inode
        except FileNotFoundError:
            moved = True
        if moved:
            self.close()
            self.open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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


class RedisStreamSink:
    """XADD records to a Redis Stream (approximate MAXLEN), at most once per request_id.

    Each entry has two fields: ``request_id`` and ``record`` (the record's JSON). Calls fail fast
    (no client-side retries): the caller spills and retries on its own schedule.
    """

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
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._add = self.client.register_script(_ADD_SCRIPT)

    def seen_key(self, request_id: str) -> str:
        return f"{self.key}:seen:{request_id}"

    async def ping(self) -> None:
        await self.client.ping()

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


class SpillStore:
    """Records that could not be delivered yet, as JSON lines in segment files under ``directory``.

    Two kinds: ``stream`` (in the JSON lines file already, still owed to the Redis Stream) and
    ``pending`` (the in-memory queue was full: owed to both sinks). A segment is named
    ``<kind>-<time_ns>-<owner>-<seq>.jsonl``; the segment being written is held under an exclusive
    ``flock`` so no other process drains it; ``claim`` takes any other segment whose lock is free.
    """

    KINDS = ("stream", "pending")

    def __init__(self, directory: Path, segment_records: int = 1000) -> None:
        self.directory = Path(directory)
        self.segment_records = segment_records
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        self._current: dict[str, tuple[Path, int, int]] = {}  # kind -> (path, fd, lines)
        self.counts = {kind: 0 for kind in self.KINDS}  # records on disk, best known

    def open(self) -> None:
        """Create the directory and count what ended processes left behind (segments nobody holds)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for kind in self.KINDS:
            self.counts[kind] = sum(_count_orphan_lines(p) for p in self.segments(kind))

    def append(self, kind: str, items: Sequence[Item]) -> None:
        if not items:
            return
        path, fd, lines = self._current.get(kind) or self._new_segment(kind)
        _write_lines(fd, items)
        lines += len(items)
        self.counts[kind] += len(items)
        self._current[kind] = (path, fd, lines)
        if lines >= self.segment_records:
            self.rotate(kind)

    def _new_segment(self, kind: str) -> tuple[Path, int, int]:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = self.directory / f"{kind}-{time.time_ns():020d}-{self.owner}-{self._seq:06d}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else can hold it
        except OSError:
            os.close(fd)
            raise
        return path, fd, 0

    def rotate(self, kind: str) -> None:
        """Close the segment being written, so that it can be claimed and drained."""
        current = self._current.pop(kind, None)
        if current is not None:
            os.close(current[1])  # releases the flock

    def segments(self, kind: str) -> list[Path]:
        """Segment files of a kind, oldest first (including the one being written)."""
        return sorted(self.directory.glob(f"{kind}-*.jsonl"))

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[list[bytes] | None]:
        """Lock a segment and yield its lines, or ``None`` when another process holds it or it is gone.

        The caller calls ``done(path, n)`` inside the block once every line is delivered; otherwise
        the segment stays for the next attempt (redelivery is harmless: the stream deduplicates).
        """
        kind = _kind(path)
        current = self._current.get(kind)
        if current is not None and current[0] == path:
            self.rotate(kind)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            if os.fstat(fd).st_nlink == 0:  # drained and removed by someone else meanwhile
                yield None
                return
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
            # A line without its newline was cut by a crash mid-write: not a record.
            yield [line for line in data.split(b"\n")[:-1] if line.strip()] if data else []
        finally:
            os.close(fd)

    def done(self, path: Path, records: int) -> None:
        """A claimed segment is delivered: remove it (still under the claim's lock)."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        kind = _kind(path)
        self.counts[kind] = max(0, self.counts[kind] - records)

    def reset_count(self, kind: str) -> None:
        """After a replay found nothing left to claim: only the segment being written remains."""
        current = self._current.get(kind)
        self.counts[kind] = current[2] if current else 0

    def close(self) -> None:
        for kind in list(self._current):
            self.rotate(kind)


def _kind(segment: Path) -> str:
    """A segment's kind, from its name ``<kind>-<time_ns>-<owner>-<seq>.jsonl``."""
    return segment.name.split("-", 1)[0]


def _count_orphan_lines(path: Path) -> int:
    """Lines in a segment no live process holds; 0 for one that is held (its owner counts it)."""
    try:
        with path.open("rb") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0
