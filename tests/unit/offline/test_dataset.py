"""The one evaluation-row loader: errors located by line, limits, rows without an id."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import RequestError
from gateway.offline.dataset import Row, load_rows


def test_a_bad_line_names_the_file_and_line(tmp_path: Path) -> None:
    """A data file with a bad line names the file and line; ``limit`` stops reading before it."""
    path = tmp_path / "rows.jsonl"
    path.write_text('{"query": "q", "domain": "d"}\n{"query": 1}\n')
    with pytest.raises(RequestError, match=r"rows\.jsonl:2"):
        load_rows(path)
    assert load_rows(path, limit=1) == [Row("#1", "d", "q")]


def test_limits_per_domain_and_one_domain(tmp_path: Path) -> None:
    """At most N rows per domain in file order; ``domain`` keeps only that domain's rows."""
    path = tmp_path / "rows.jsonl"
    lines = [
        '{"id": "a", "domain": "math", "query": "1+1", "gold": [2]}',
        '{"id": 7, "domain": "code", "query": "f"}',
        "",
        '{"id": "c", "domain": "math", "query": "2+2", "gold": ["4"]}',
    ]
    path.write_text("\n".join(lines) + "\n")
    assert [r.id for r in load_rows(path, 1)] == ["a", "7"]
    assert load_rows(path, domain="math")[1] == Row("c", "math", "2+2", ["4"])
    assert load_rows(path)[0].gold == ["2"]  # numbers among the gold answers are read as text


def test_duplicate_ids_and_empty_files_are_refused(tmp_path: Path) -> None:
    """Two rows with one id, or no row of the asked domain, is an error naming the file."""
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a", "domain": "d", "query": "q"}\n{"id": "a", "domain": "d", "query": "r"}\n')
    with pytest.raises(RequestError, match=r"rows\.jsonl:2: duplicate id 'a'"):
        load_rows(path)
    path.write_text('{"id": "a", "domain": "d", "query": "q"}\n')
    with pytest.raises(RequestError, match="no rows of domain 'math'"):
        load_rows(path, domain="math")
