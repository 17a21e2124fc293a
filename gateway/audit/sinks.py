"""The audit JSON lines file, and the ``(request_id, line)`` items that every sink takes.

Records travel as ``(request_id, json_bytes)`` pairs, encoded once. ``JsonLinesSink`` appends them
with one ``write(2)`` per batch (``O_APPEND``: lines from several processes never interleave). The
Redis Stream is ``gateway.audit.stream``, the on-disk spill ``gateway.audit.spill``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import msgspec

Item = tuple[str, bytes]
"""One encoded record: its request_id and its JSON (no newline)."""


class _RequestId(msgspec.Struct):
    request_id: str


_id_decoder = msgspec.json.Decoder(_RequestId)


def item_from_line(line: bytes) -> Item:
    """Rebuild an item from a spilled JSON line (raises ``msgspec.DecodeError`` if it is not one)."""
    return _id_decoder.decode(line).request_id, line


def write_lines(fd: int, items: Sequence[Item]) -> None:
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
        write_lines(self._fd, items)

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
