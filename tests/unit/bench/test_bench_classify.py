"""``stopgate bench classify``'s figures: accuracy, confusion counts and latency percentiles."""

from __future__ import annotations

from gateway.bench.classify import evaluate


def test_evaluate_counts() -> None:
    """Accuracy per domain, the confusion counts and nearest-rank latency percentiles come from the rows."""
    report = evaluate(["a", "a", "b", "b"], ["a", "b", "b", "b"], [1.0, 2.0, 3.0, 100.0])
    assert report["accuracy"] == 0.75 and report["worst_domain"] == "a"
    assert report["domains"] == {"a": {"items": 2, "accuracy": 0.5}, "b": {"items": 2, "accuracy": 1.0}}
    assert report["confusion"] == {"a": {"a": 1, "b": 1}, "b": {"b": 2}}
    # nearest rank: p50 of 4 values is the 2nd, p99 the 4th
    assert report["latency_ms"]["p50"] == 2.0 and report["latency_ms"]["p99"] == 100.0
