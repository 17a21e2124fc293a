"""`stopgate bench engine`: the synthetic stream exercises every rule without stopping it."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.bench import engine as bench
from gateway.policy.engine import PolicyEngine, replay
from gateway.worker.protocol import ProbeResult


def test_no_bench_rule_fires_on_the_synthetic_stream() -> None:
    """Each family is timed over every token: none of them stops the stream early."""
    events = bench.synthetic_stream(512, seed=3)
    assert events == bench.synthetic_stream(512, seed=3)  # deterministic input
    assert sum(e.text.count("```") for e in events) >= 2  # code fences are part of the mix
    answers = {n: ProbeResult(f" {n}", 1, 0.99) for n in range(1, 513)}
    for name, spec in bench.BENCH_RULES.items():
        out = replay(PolicyEngine([spec], max_tokens=1000), events, answers).outcome
        assert out.stop_rule is None and out.tokens == 512, name


def test_run_reports_every_family(tmp_path: Path) -> None:
    """A tiny run prints the table and writes one figure per rule family to --json."""
    report = tmp_path / "engine.json"
    bench.run(bench.Options(tokens=64, streams=2, rounds=1, json=report))
    figures = json.loads(report.read_text())
    assert set(figures["rules_us"]) == set(bench.BENCH_RULES)
    assert figures["target_us"] == 20.0 and figures["all_rules_us"] > 0
