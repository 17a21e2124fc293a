"""The audit hash chain: every line a writer delivers carries the hash of its previous one.

A writer (one ``AuditLog``, i.e. one process) seals each record just before it reaches the JSON
lines file; the same sealed bytes go to the Redis Stream. Sealing appends four keys to the record's
JSON, always last and in this order::

    ...,"writer":"host-123-ab12cd34","seq":7,"prev_hash":"<64 hex>","hash":"<64 hex>"}

``hash`` is the SHA-256 of the line up to (not including) ``,"hash":...`` with the closing brace,
so editing any byte, including the chain keys, breaks it; ``prev_hash`` is the previous line's
``hash`` of the same writer (``GENESIS`` for its first, ``seq`` 0), so removing, inserting or
reordering lines breaks the links. ``ChainCheck`` walks lines in order and names the first problem.
The check works on bytes, not on a decoded record, so records of any schema version verify alike.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import uuid
from dataclasses import dataclass, field

GENESIS = "0" * 64
"""``prev_hash`` of a writer's first record."""

_SEAL = re.compile(
    rb',"writer":"([A-Za-z0-9._-]{1,96})","seq":(0|[1-9][0-9]{0,18}),"prev_hash":"([0-9a-f]{64})"'
    rb',"hash":"([0-9a-f]{64})"\}\s*$'
)
_HASH_KEY = b',"hash":"'


def new_writer_id() -> str:
    """A writer id unique per process and start: host, pid and a random suffix (JSON-safe characters)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unsealed(line: bytes) -> bytes:
    """The record's JSON without a seal (lines that carry none are returned unchanged)."""
    m = _SEAL.search(line)
    return line[: m.start()] + b"}" if m else line


class Chain:
    """One writer's chain: ``seal`` turns an encoded record into the line that is delivered."""

    def __init__(self, writer: str | None = None) -> None:
        self.writer = new_writer_id() if writer is None else writer
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,96}", self.writer):
            raise ValueError(f"writer id {self.writer!r}: use 1-96 of A-Z a-z 0-9 . _ -")
        self.seq = 0
        self.last_hash = GENESIS

    def seal(self, record_json: bytes) -> bytes:
        """The next line of this writer's chain. A line sealed before (a replay) is re-sealed here."""
        body = unsealed(record_json).rstrip()
        if not body.endswith(b"}") or len(body) < 3:
            raise ValueError("not a JSON object with fields")
        link = body[:-1] + f',"writer":"{self.writer}","seq":{self.seq},"prev_hash":"{self.last_hash}"'.encode()
        digest = _digest(link + b"}")
        self.seq += 1
        self.last_hash = digest
        return link + _HASH_KEY + digest.encode() + b'"}'


@dataclass(frozen=True, slots=True)
class Seal:
    """The chain keys of one line, and whether its hash matches its content."""

    writer: str
    seq: int
    prev_hash: str
    hash: str
    intact: bool


def read_seal(line: bytes) -> Seal | None:
    """The seal of a delivered line; ``None`` when it carries none."""
    m = _SEAL.search(line)
    if m is None:
        return None
    hashed = line[: m.start(4) - len(_HASH_KEY)] + b"}"
    digest = m.group(4).decode()
    return Seal(m.group(1).decode(), int(m.group(2)), m.group(3).decode(), digest, _digest(hashed) == digest)


@dataclass
class ChainCheck:
    """Feed lines in delivery order; ``feed`` returns the problem with a line, or ``None``.

    ``partial``: chains may begin after their start (a ``--since`` window, a trimmed stream, a
    rotated file); otherwise a writer's first record must be its ``seq`` 0. Lines without a seal
    are tolerated only before the first sealed line (records written before chaining existed).
    """

    partial: bool = False
    records: int = 0
    legacy: int = 0
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)  # writer -> (last seq, last hash)
    started_mid: dict[str, int] = field(default_factory=dict)  # writer -> the seq it was first seen at

    def feed(self, line: bytes) -> str | None:
        seal = read_seal(line)
        if seal is None:
            if not self.records:
                self.legacy += 1
                return None
            return "record without a hash among chained records: its chain keys were removed or altered"
        self.records += 1
        if not seal.intact:
            return f"edited: the hash does not match the content (writer {seal.writer}, seq {seal.seq})"
        head = self.heads.get(seal.writer)
        self.heads[seal.writer] = (seal.seq, seal.hash)
        if head is None:
            return self._first(seal)
        last_seq, last_hash = head
        if seal.seq == last_seq + 1:
            if seal.prev_hash != last_hash:
                return f"broken: prev_hash is not the hash of seq {last_seq} (writer {seal.writer}, seq {seal.seq})"
            return None
        if seal.seq > last_seq + 1:
            gap = seal.seq - last_seq - 1
            return (
                f"missing or reordered: writer {seal.writer} goes from seq {last_seq} to {seal.seq} "
                f"({gap} record{'s' if gap > 1 else ''} missing here)"
            )
        return f"reordered or repeated: writer {seal.writer} seq {seal.seq} comes after seq {last_seq}"

    def _first(self, seal: Seal) -> str | None:
        if seal.seq == 0:
            if seal.prev_hash != GENESIS:
                return f"broken: writer {seal.writer}'s first record (seq 0) does not start from the genesis hash"
            return None
        if self.partial:
            self.started_mid[seal.writer] = seal.seq
            return None
        return (
            f"missing: writer {seal.writer} starts at seq {seal.seq}; its records 0-{seal.seq - 1} are not here "
            "(use --since for a window, --partial for a rotated file)"
        )
