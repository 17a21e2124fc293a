"""The file sink and the on-disk spill: line framing, rotation, segment ownership."""

from __future__ import annotations

import json

import msgspec
import pytest

from gateway.audit.sinks import JsonLinesSink, item_from_line
from gateway.audit.spill import SpillStore


def items(*ids: str) -> list[tuple[str, bytes]]:
    return [(i, json.dumps({"request_id": i}).encode()) for i in ids]


def test_jsonl_sink_appends_one_line_per_record(tmp_path):
    """Each record is one JSON line; the parent directory is created."""
    sink = JsonLinesSink(tmp_path / "deep" / "audit.jsonl")
    sink.open()
    sink.write(items("a", "b"))
    sink.write(items("c"))
    sink.close()
    got = [json.loads(x)["request_id"] for x in (tmp_path / "deep" / "audit.jsonl").read_text().splitlines()]
    assert got == ["a", "b", "c"]


def test_jsonl_sink_follows_the_path_after_rotation(tmp_path):
    """After logrotate moves the file away, new lines go to a fresh file at the path."""
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesSink(path)
    sink.open()
    sink.write(items("old"))
    path.rename(tmp_path / "audit.jsonl.1")
    sink.write(items("new"))
    sink.close()
    assert "new" in path.read_text() and "old" not in path.read_text()
    assert "old" in (tmp_path / "audit.jsonl.1").read_text()


def test_item_from_line_reads_the_request_id():
    """A spilled line gives back its request_id and its bytes; junk is a decode error."""
    assert item_from_line(b'{"request_id": "x", "other": 1}') == ("x", b'{"request_id": "x", "other": 1}')
    with pytest.raises(msgspec.DecodeError):
        item_from_line(b'{"request_id": "x", "oth')


def test_spill_append_claim_done(tmp_path):
    """Spilled items come back from claim(); done() removes the segment and the count."""
    spill = SpillStore(tmp_path)
    spill.open()
    spill.append("stream", items("a", "b"))
    assert spill.counts["stream"] == 2
    (segment,) = spill.segments("stream")
    with spill.claim(segment) as lines:
        assert lines is not None and [item_from_line(x)[0] for x in lines] == ["a", "b"]
        spill.done(segment, len(lines))
    assert spill.segments("stream") == [] and spill.counts["stream"] == 0


def test_spill_rotates_segments_at_the_size_limit(tmp_path):
    """A segment holds at most segment_records lines; more go to the next one."""
    spill = SpillStore(tmp_path, segment_records=2)
    spill.append("pending", items("a", "b", "c"))
    spill.append("pending", items("d"))
    assert len(spill.segments("pending")) == 2


def test_segment_held_by_another_owner_is_not_claimed(tmp_path):
    """A live writer's current segment (flock held) is skipped by other stores."""
    writer = SpillStore(tmp_path)
    writer.append("stream", items("a"))
    other = SpillStore(tmp_path)
    other.open()
    assert other.counts["stream"] == 0  # held: its owner counts it
    (segment,) = other.segments("stream")
    with other.claim(segment) as lines:
        assert lines is None
    writer.close()  # the owner ends: the segment is an orphan now
    late = SpillStore(tmp_path)
    late.open()
    assert late.counts["stream"] == 1
    with late.claim(segment) as lines:
        assert lines is not None and len(lines) == 1


def test_claim_drops_a_line_cut_by_a_crash(tmp_path):
    """A last line without its newline (crash mid-write) is not returned as a record."""
    seg = tmp_path / "stream-00000000000000000001-dead.jsonl"
    seg.write_bytes(b'{"request_id": "a"}\n{"request_id": "b')
    spill = SpillStore(tmp_path)
    spill.open()
    with spill.claim(seg) as lines:
        assert lines == [b'{"request_id": "a"}']


def test_claiming_the_own_current_segment_rotates_it(tmp_path):
    """The store can drain the segment it is writing: claim() closes it first, new items start a new one."""
    spill = SpillStore(tmp_path)
    spill.append("stream", items("a"))
    (segment,) = spill.segments("stream")
    with spill.claim(segment) as lines:
        assert lines is not None
        spill.append("stream", items("b"))
        spill.done(segment, len(lines))
    assert len(spill.segments("stream")) == 1
    spill.reset_count("stream")
    assert spill.counts["stream"] == 1
