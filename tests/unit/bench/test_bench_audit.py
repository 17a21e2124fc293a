"""`stopgate bench audit`: runs, reports submit cost and throughput, and checks nothing was lost."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from gateway.bench import audit as bench_audit


def test_bench_audit_file_only(tmp_path, capsys):
    """A small file-only run reports its figures and exits 0 (no record lost or duplicated)."""
    out = tmp_path / "bench.json"
    options = bench_audit.Options(records=500, no_redis=True, json=out)
    with ThreadPoolExecutor(1) as pool:  # run() owns its event loop
        assert pool.submit(bench_audit.run, options).result() == 0
    result = json.loads(out.read_text())
    assert result["records"] == 500 and result["lost"] == 0 and result["jsonl_lines"] == 500
    assert result["submit_ns"]["p50"] > 0 and result["throughput_rps"] > 0
    assert "loop_cpu_us_per_record" in result
    capsys.readouterr()
