"""Reading the trail back: time parsing, filters, the file reader, and per-domain summaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.audit.query import ALL, AuditFilter, parse_time, percentile, query_file, summary
from gateway.audit.record import AuditError, ShadowDecision, encode_record
from gateway.errors import RequestError


def test_parse_time_accepts_iso_and_spans():
    """ISO 8601 with Z/offset/naive (UTC) and spans like 15m are understood."""
    assert parse_time("2026-05-01T12:00:00Z") == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert parse_time("2026-05-01T14:00:00+02:00") == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert parse_time("2026-05-01T12:00:00") == datetime(2026, 5, 1, 12, tzinfo=UTC)
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert parse_time("15m", now=now) == now - timedelta(minutes=15)
    assert parse_time("2d", now=now) == now - timedelta(days=2)


def test_parse_time_error_names_the_parameter():
    """A bad time is a RequestError naming the flag or query parameter."""
    with pytest.raises(RequestError, match="until") as info:
        parse_time("yesterday", param="until")
    assert info.value.param == "until"


def test_filter_matches_domain_rule_and_time(make_record):
    """Each filter narrows; stop_rule 'none' means no rule fired."""
    rec = make_record(domain="code", stop_rule=None, ts="2026-05-01T12:00:00.000Z")
    assert AuditFilter(domain="code", stop_rule="none").matches(rec)
    assert not AuditFilter(domain="math").matches(rec)
    assert not AuditFilter(stop_rule="repetition").matches(rec)
    t = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert AuditFilter(since=t, until=t).matches(rec)
    assert not AuditFilter(since=t + timedelta(seconds=1)).matches(rec)
    assert not AuditFilter(until=t - timedelta(seconds=1)).matches(rec)


def test_query_file_keeps_most_recent_matches_dedups_and_counts_junk(tmp_path, make_record):
    """limit keeps the newest matches; a repeated request_id counts once; junk lines are skipped."""
    path = tmp_path / "audit.jsonl"
    recs = [make_record(f"r{i}", ts=f"2026-05-01T12:00:0{i}.000Z") for i in range(5)]
    lines = [encode_record(r) for r in recs] + [encode_record(recs[1]), b"not json", b'{"ts": 1}']
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = query_file(path, AuditFilter(limit=2))
    assert [r.request_id for r in result.records] == ["r3", "r4"]
    assert result.skipped == 2
    assert len(query_file(path, AuditFilter()).records) == 5


def test_query_file_missing_is_empty(tmp_path):
    """No file yet means no records, not an error."""
    assert query_file(tmp_path / "none.jsonl", AuditFilter()).records == []


def test_percentile_is_nearest_rank():
    """p50 and p95 are values from the data (nearest rank); none for no data."""
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0


def test_summary_per_domain(make_record):
    """Requests, tokens, rule and shadow counts, errors, disconnects and latency per domain plus (all)."""
    recs = [
        make_record(
            "a",
            domain="math",
            stop_rule="repetition",
            completion_tokens=50,
            max_tokens=256,
            shadow=ShadowDecision(rule="probe", at_token=20),
            ttft_ms=10.0,
            duration_ms=100.0,
        ),
        make_record(
            "b",
            domain="math",
            stop_rule=None,
            completion_tokens=100,
            max_tokens=256,
            ttft_ms=30.0,
            duration_ms=300.0,
        ),
        make_record(
            "c",
            domain="code",
            client_disconnected=True,
            finish_reason=None,
            ttft_ms=None,
            error=AuditError(type="WorkerError", message="x"),
        ),
    ]
    table = summary(recs)
    assert list(table) == ["code", "math", ALL]
    math = table["math"]
    assert math.requests == 2 and math.completion_tokens == 150
    assert math.stop_rules == {"repetition": 1, "none": 1} and math.shadow == {"probe": 1}
    assert math.saved_method == "budget" and math.saved_estimate == 206  # 256 - 50, rule-stopped only
    assert math.ttft_p50_ms == 10.0 and math.ttft_p95_ms == 30.0
    assert table["code"].errors == 1 and table["code"].disconnects == 1 and table["code"].ttft_p50_ms is None
    assert table[ALL].requests == 3


def test_summary_uses_sampled_full_generations_when_present(make_record):
    """With online samples, savings and agreement are measured on them and extrapolated to all requests."""
    recs = [
        make_record("s1", completion_tokens=40, full_completion_tokens=100, answer_agreed=True),
        make_record("s2", completion_tokens=60, full_completion_tokens=100, answer_agreed=False),
        make_record("u1", completion_tokens=50),
        make_record("u2", completion_tokens=50),
    ]
    math = summary(recs)["math"]
    assert math.sampled == 2 and math.saved_sampled == 100
    assert math.saved_sampled_pct == 50.0
    assert math.saved_method == "sampled" and math.saved_estimate == 200  # mean 50 saved x 4 requests
    assert math.agreement == 0.5


def test_percentile_picks_observed_values() -> None:
    """p50 and p99 pick observed values; no values give None."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
