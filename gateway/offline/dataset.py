"""Evaluation rows (JSON lines, one query each): the one loader of the benchmarks and calibration."""

from __future__ import annotations

from pathlib import Path

import msgspec

from gateway.errors import RequestError


class Row(msgspec.Struct, frozen=True):
    """One query: ``gold`` is a list of accepted answers, or null where the domain has none."""

    id: str
    domain: str
    query: str
    gold: list[str] | None = None


class _RawRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row as written (a number as id or gold answer is fine); other fields are ignored."""

    id: str | int | None = None
    domain: str
    query: str
    gold: list[str | int | float] | None = None


def load_rows(
    path: Path, limit_per_domain: int | None = None, domain: str | None = None, *, limit: int | None = None
) -> list[Row]:
    """Rows of ``path`` in file order; at most ``limit_per_domain`` per domain, only ``domain`` if
    given, and at most ``limit`` in all (the file is read no further). A row without an ``id`` is
    named after its line (``#N``)."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise RequestError(f"cannot read {path}: {exc.strerror or exc}", param="data") from exc
    rows: list[Row] = []
    seen: dict[str, int] = {}
    ids: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if limit is not None and len(rows) >= limit:
            break
        if not line.strip():
            continue
        try:
            row = msgspec.json.decode(line, type=_RawRow)
        except msgspec.DecodeError as exc:
            raise RequestError(f"{path}:{number}: {exc}", param="data") from exc
        row_id = f"#{number}" if row.id is None else str(row.id)
        if row_id in ids:
            raise RequestError(f"{path}:{number}: duplicate id {row_id!r}", param="data")
        ids.add(row_id)
        if domain is not None and row.domain != domain:
            continue
        if limit_per_domain is not None and seen.get(row.domain, 0) >= limit_per_domain:
            continue
        seen[row.domain] = seen.get(row.domain, 0) + 1
        rows.append(Row(row_id, row.domain, row.query, [str(g) for g in row.gold] if row.gold else None))
    if not rows:
        raise RequestError(f"{path}: no rows" + (f" of domain {domain!r}" if domain else ""), param="data")
    return rows
