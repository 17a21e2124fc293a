"""The on-disk spill: records that could not be delivered yet, and their replay.

``SpillStore`` keeps records on disk in segment files, each owned (``flock``) by one process;
segments whose owner is gone are picked up by the next process. ``Spill`` is what the writer uses:
``park`` (thread-safe: ``submit`` may spill from a foreign thread) and ``drain`` (replay segments of a
kind through a delivery callback, oldest first, so the chain order of lines owed to the stream is kept).

Two kinds: ``stream`` lines are sealed already (they are in the JSON lines file and owed to the Redis
Stream only); ``pending`` records never reached the file (the queue was full, or the writer had
stopped): they are sealed by whichever writer replays them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import msgspec
import structlog

from gateway.audit.sinks import Item, item_from_line, write_lines

log = structlog.get_logger("stopgate.audit")

DRAIN_BUDGET = 5000  # records replayed per round, so new records keep flowing during a long replay


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
        write_lines(fd, items)
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


class Spill:
    """The writer's side of the spill: parking records (from any thread) and replaying segments."""

    def __init__(self, directory: Path) -> None:
        self.store = SpillStore(Path(directory))
        self._lock = threading.Lock()
        # Counters: ever spilled / lost for good (the disk refused the spill) / unreadable spill lines.
        self.spilled = 0
        self.failed = 0
        self.corrupt = 0

    @property
    def directory(self) -> Path:
        return self.store.directory

    def open(self) -> None:
        self.store.open()

    def close(self) -> None:
        with self._lock:
            self.store.close()

    def count(self, kind: str) -> int:
        return self.store.counts[kind]

    @property
    def total(self) -> int:
        return sum(self.store.counts.values())

    def park(self, kind: str, items: list[Item], *, release: bool = False) -> None:
        """Append items to the current segment of ``kind``; ``release``: close it so others may claim it."""
        if not items:
            return
        try:
            with self._lock:
                self.store.append(kind, items)
                if release:
                    self.store.rotate(kind)
            self.spilled += len(items)
        except OSError:
            self.failed += len(items)
            log.exception("audit_spill_failed", records=len(items), spill_dir=str(self.directory))

    async def drain(self, kind: str, deliver: Callable[[list[Item]], Awaitable[bool]]) -> bool:
        """Replay segments of ``kind`` oldest first through ``deliver`` (False: stop, keep the segment).

        Returns False when nothing could be done (segments locked by others, or delivery refused)."""
        done = 0
        blocked = False
        for path in self.store.segments(kind):
            if done >= DRAIN_BUDGET:
                return True
            with self.store.claim(path) as lines:
                if lines is None:
                    blocked = True
                    continue
                if not await deliver(self._parse(lines)):
                    return done > 0
                with self._lock:
                    self.store.done(path, len(lines))
                done += len(lines)
        if not blocked:
            with self._lock:
                self.store.reset_count(kind)
        return done > 0 or not blocked

    def _parse(self, lines: list[bytes]) -> list[Item]:
        items = []
        for line in lines:
            try:
                items.append(item_from_line(line))
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.corrupt += 1
        if len(items) < len(lines):
            log.error("audit_spill_corrupt_lines", skipped=len(lines) - len(items))
        return items
