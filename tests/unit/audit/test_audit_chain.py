"""The audit hash chain: sealed lines, and the check that finds edited, deleted and swapped records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.audit.chain import GENESIS, Chain, ChainCheck, read_seal, unsealed
from gateway.audit.log import AuditLog
from gateway.audit.record import decode_record, encode_record
from gateway.audit.verify import verify_file
from gateway.cli import main


def sealed_lines(chain: Chain, make_record, n: int) -> list[bytes]:
    return [chain.seal(encode_record(make_record(f"r{i}", completion_tokens=10 + i))) for i in range(n)]


def first_problem(lines: list[bytes], partial: bool = False) -> str | None:
    check = ChainCheck(partial=partial)
    for line in lines:
        problem = check.feed(line)
        if problem is not None:
            return problem
    return None


def test_seal_appends_writer_seq_prev_and_hash_and_stays_a_record(make_record):
    """A sealed line is still one valid record whose prev_hash links to the line before it."""
    chain = Chain("w1")
    a, b = sealed_lines(chain, make_record, 2)
    ra, rb = decode_record(a), decode_record(b)
    assert (ra.writer, ra.seq, ra.prev_hash) == ("w1", 0, GENESIS)
    assert (rb.seq, rb.prev_hash) == (1, ra.hash)
    assert a.endswith(f',"hash":"{ra.hash}"}}'.encode())
    assert json.loads(unsealed(a)) == json.loads(encode_record(make_record("r0", completion_tokens=10)))


def test_intact_chain_passes(make_record):
    """An untouched sequence of sealed lines has no problem."""
    assert first_problem(sealed_lines(Chain("w"), make_record, 5)) is None


def test_an_edited_record_is_found(make_record):
    """Changing one digit of a field breaks that line's own hash."""
    lines = sealed_lines(Chain("w"), make_record, 5)
    lines[2] = re.sub(rb'"completion_tokens":(\d+)', b'"completion_tokens":99', lines[2])
    assert (first_problem(lines) or "").startswith("edited")


def test_an_edit_that_recomputes_its_own_hash_breaks_the_next_link(make_record):
    """Re-sealing an edited line by hand still leaves the next record pointing at the old hash."""
    lines = sealed_lines(Chain("w"), make_record, 4)
    seal = read_seal(lines[1])
    assert seal is not None
    forger = Chain("w")
    forger.seq, forger.last_hash = seal.seq, seal.prev_hash
    lines[1] = forger.seal(re.sub(rb'"completion_tokens":\d+', b'"completion_tokens":1', lines[1]))
    assert (first_problem(lines) or "").startswith("broken")


def test_a_deleted_record_is_found(make_record):
    """A missing line shows as a gap in its writer's sequence."""
    lines = sealed_lines(Chain("w"), make_record, 5)
    del lines[2]
    assert "missing" in (first_problem(lines) or "")


def test_two_swapped_records_are_found(make_record):
    """Swapping two neighbours breaks the order of the chain."""
    lines = sealed_lines(Chain("w"), make_record, 5)
    lines[1], lines[2] = lines[2], lines[1]
    assert "reordered" in (first_problem(lines) or "")


def test_writers_are_checked_apart_and_may_interleave(make_record):
    """Two processes appending to one file: each chain is checked on its own."""
    a, b = sealed_lines(Chain("a"), make_record, 3), sealed_lines(Chain("b"), make_record, 3)
    assert first_problem([a[0], b[0], b[1], a[1], a[2], b[2]]) is None


def test_a_chain_starting_late_needs_partial(make_record):
    """A file that begins mid-chain is a problem unless the walk is partial (a window or a rotated file)."""
    lines = sealed_lines(Chain("w"), make_record, 4)[2:]
    assert "missing" in (first_problem(lines) or "")
    assert first_problem(lines, partial=True) is None


def test_unsealed_lines_are_accepted_only_before_the_chained_ones(make_record):
    """Records from before chaining existed may precede the chain; one among chained lines is a problem."""
    old = encode_record(make_record("old"))
    lines = sealed_lines(Chain("w"), make_record, 2)
    assert first_problem([old, *lines]) is None
    assert first_problem([lines[0], old, lines[1]]) is not None


def test_resealing_a_sealed_line_replaces_its_seal(make_record):
    """A replayed line that carries an old seal is sealed afresh, not twice."""
    line = Chain("old").seal(encode_record(make_record()))
    again = Chain("new").seal(line)
    assert again.count(b'"hash":') == 1 and decode_record(again).writer == "new"


@pytest.mark.parametrize("bad", ["has space", "", "x" * 97, 'q"uote'])
def test_writer_ids_are_json_safe(bad):
    """A writer id that could break the JSON or the seal pattern is refused."""
    with pytest.raises(ValueError):
        Chain(bad)


async def test_audit_log_file_verifies_and_its_tampered_copies_do_not(tmp_path: Path, make_record, capsys):
    """Records written by AuditLog pass `stopgate audit verify`; an edit, a deletion and a swap fail it."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, None, tmp_path / "spill")
    await audit.start()
    for i in range(6):
        audit.submit(make_record(f"r{i}", completion_tokens=i))
    await audit.close()
    assert verify_file(path).ok and verify_file(path).records == 6
    assert main(["audit", "verify", "--file", str(path)]) == 0
    assert capsys.readouterr().out.startswith("ok 6 records")
    lines = path.read_text().splitlines(keepends=True)
    edited = [*lines[:3], lines[3].replace('"completion_tokens":3', '"completion_tokens":4'), *lines[4:]]
    variants = {
        "edited": edited,
        "deleted": lines[:3] + lines[4:],
        "swapped": [*lines[:3], lines[4], lines[3], *lines[5:]],
    }
    for name, content in variants.items():
        copy = tmp_path / f"{name}.jsonl"
        copy.write_text("".join(content))
        assert main(["audit", "verify", "--file", str(copy)]) == 1, name
        assert "line 4" in capsys.readouterr().err, name


async def test_spilled_records_join_the_chain_when_replayed(tmp_path: Path, make_record):
    """Records parked on disk (queue full) are sealed when a writer delivers them: the file still verifies."""
    path = tmp_path / "audit.jsonl"
    first = AuditLog(path, None, tmp_path / "spill", queue_size=2)
    for i in range(5):
        first.submit(make_record(f"r{i}"))  # not started: 3 of 5 spill
    await first.start()
    await first.close()
    first.submit(make_record("late"))  # after close: parked for the next writer
    second = AuditLog(path, None, tmp_path / "spill")
    await second.start()
    await second.close()
    result = verify_file(path)
    assert result.ok and result.records == 6 and result.writers == 2, result.summary()
