"""``stopgate classify TEXT`` and ``stopgate bench classify`` end to end, in process."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from gateway.cli import main


def test_classify_prints_json(tiny_domains: Path, shared_data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command prints one JSON object with domain, confidence and scores, exit 0."""
    status = main(
        ["classify", "what is 11 times 11", "--domains-dir", str(tiny_domains), "--data-dir", str(shared_data_dir)]
    )
    out = json.loads(capsys.readouterr().out)
    assert status == 0 and out["domain"] == "math" and set(out["scores"]) == {"math", "support", "general"}
    assert any((shared_data_dir / "cache" / "classify").glob("*.npy"))


def test_classify_reads_stdin(
    tiny_domains: Path, shared_data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """'-' classifies the text on stdin."""
    monkeypatch.setattr("sys.stdin", io.StringIO("my debit card was stolen yesterday\n"))
    assert main(["classify", "-", "--domains-dir", str(tiny_domains), "--data-dir", str(shared_data_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["domain"] == "support"


def test_classify_errors_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Blank text and an invalid domains directory are errors on stderr with exit status 1."""
    assert main(["classify", "  "]) == 1
    assert "empty" in capsys.readouterr().err
    bad = tmp_path / "domains"
    bad.mkdir()
    (bad / "general.yaml").write_text("name: general\ndescription: x\nexamples: [a]\nwat: 1\n")
    assert main(["classify", "hello", "--domains-dir", str(bad), "--data-dir", str(tmp_path)]) == 1
    assert "general.yaml:4: wat: unknown field" in capsys.readouterr().err


def test_bench_classify_writes_json(
    tiny_domains: Path, tmp_path: Path, shared_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The benchmark classifies every row, prints the confusion table and writes the figures."""
    data = tmp_path / "rows.jsonl"
    rows = [
        ("what is 4 plus 4", "math"),
        ("block my stolen card", "support"),
        ("play some music", "general"),
        ("how much is 30 percent of 90", "math"),
        ("book a hotel in rome", "general"),
    ]
    data.write_text("".join(json.dumps({"id": i, "query": q, "domain": d}) + "\n" for i, (q, d) in enumerate(rows)))
    out = tmp_path / "report.json"
    status = main(
        [
            "bench",
            "classify",
            "--data",
            str(data),
            "--json",
            str(out),
            "--domains-dir",
            str(tiny_domains),
            "--data-dir",
            str(shared_data_dir),
        ]
    )
    assert status == 0
    report = json.loads(out.read_text())
    assert report["items"] == 5 and report["accuracy"] == 1.0
    assert set(report["latency_ms"]) == {"p50", "p99", "mean"}
    assert "confusion" in capsys.readouterr().out
