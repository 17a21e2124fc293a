"""`stopgate audit tail|query|summary` over the JSON lines file (no Redis configured)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.audit.record import AuditRecord, encode_record
from gateway.cli import audit as audit_cli
from gateway.errors import RequestError
from gateway.redis_server import free_port
from tests.audit_records import COMPACT, build_record


def record(request_id: str, domain: str, ts: str, stop_rule: str | None = None, **extra) -> AuditRecord:
    return build_record(
        request_id, **{**COMPACT, "ts": ts, "domain": domain, "policy": domain, "stop_rule": stop_rule, **extra}
    )


@pytest.fixture()
def audit_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """STOPGATE_AUDIT_LOG pointing at a file with three records; no Redis URL."""
    path = tmp_path / "audit.jsonl"
    recs = [
        record("a", "math", "2026-05-01T10:00:00.000Z", "repetition"),
        record("b", "code", "2026-05-01T11:00:00.000Z"),
        record("c", "math", "2026-05-01T12:00:00.000Z", full_completion_tokens=20, answer_agreed=True),
    ]
    path.write_bytes(b"".join(encode_record(r) + b"\n" for r in recs))
    monkeypatch.setenv("STOPGATE_AUDIT_LOG", str(path))
    monkeypatch.delenv("STOPGATE_REDIS_URL", raising=False)
    # CLI commands find a gateway's local Redis under the data dir: keep a running `make run` out of the test.
    monkeypatch.setenv("STOPGATE_DATA_DIR", str(tmp_path / "data"))
    return path


def run(argv: list[str]) -> int:
    """Parse and run like `stopgate audit ...`, in a thread (the handlers own their event loop)."""
    parser = argparse.ArgumentParser(prog="stopgate")
    audit_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", *argv])
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(args.handler, args).result()


def json_ids(out: str) -> list[str]:
    return [json.loads(line)["request_id"] for line in out.splitlines() if line.strip()]


def test_query_json_prints_one_record_per_line(audit_file, capsys):
    """--format json: JSON lines, one full record each, oldest first."""
    assert run(["query", "--since", "2026-05-01T00:00:00Z", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert json_ids(out) == ["a", "b", "c"]
    assert json.loads(out.splitlines()[0])["stop_rule"] == "repetition"


def test_query_filters(audit_file, capsys):
    """--domain, --stop-rule, --until and --limit narrow the output."""
    run(["query", "--domain", "math", "--format", "json"])
    assert json_ids(capsys.readouterr().out) == ["a", "c"]
    run(["query", "--stop-rule", "repetition", "--format", "json"])
    assert json_ids(capsys.readouterr().out) == ["a"]
    run(["query", "--until", "2026-05-01T10:30:00Z", "--format", "json"])
    assert json_ids(capsys.readouterr().out) == ["a"]
    run(["query", "--limit", "1", "--format", "json"])
    assert json_ids(capsys.readouterr().out) == ["c"]


def test_query_table(audit_file, capsys):
    """The default table shows each request id and its policy version."""
    run(["query"])
    out = capsys.readouterr().out
    assert "repetition" in out and "math@v1" in out


def test_bad_since_is_a_request_error(audit_file):
    """An unparsable --since raises the error the CLI prints on stderr (exit 1)."""
    with pytest.raises(RequestError, match="--since"):
        run(["query", "--since", "someday"])


def test_tail_prints_the_last_records(audit_file, capsys):
    """tail -n 2 shows the two most recent records."""
    run(["tail", "-n", "2"])
    assert json_ids(capsys.readouterr().out) == ["b", "c"]


def test_summary_table_and_json(audit_file, capsys):
    """summary shows per-domain rows plus (all); --format json has the figures."""
    run(["summary"])
    out = capsys.readouterr().out
    assert "math" in out and "code" in out and "(all)" in out
    run(["summary", "--format", "json"])
    rows = {row["domain"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["math"]["requests"] == 2 and rows["math"]["sampled"] == 1 and rows["math"]["agreement"] == 1.0
    assert rows["(all)"]["stop_rules"] == {"none": 2, "repetition": 1}


def test_unreachable_redis_falls_back_to_the_file(audit_file, capsys, monkeypatch):
    """With STOPGATE_REDIS_URL down, query reads the file and says so on stderr."""
    monkeypatch.setenv("STOPGATE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert run(["query", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json_ids(captured.out) == ["a", "b", "c"]
    assert "Redis unreachable" in captured.err


def test_the_audit_command_does_not_import_torch():
    """`stopgate audit` stays light: importing it pulls in no torch."""
    code = "import sys, gateway.cli.audit, gateway.audit; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
