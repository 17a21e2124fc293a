"""`stopgate policies validate|push|show|history|rollback` against a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.cli.policies import DEFAULT_DOMAINS, known_domains
from tests.integration.policy_files import DOMAINS, FILES, write_policies


@pytest.fixture()
def policies_dir(tmp_path: Path) -> Path:
    return write_policies(tmp_path)


def cli(*args: str) -> int:
    return main(["policies", *args, "--known-domains", ",".join(DOMAINS)])


def test_validate_ok(policies_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid directory exits 0 and names the policies."""
    assert cli("validate", str(policies_dir)) == 0
    assert "2 policies valid (default, factual)" in capsys.readouterr().out


def test_validate_lists_every_problem_one_per_line(policies_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid files exit 1 with one `file:line: field: message` line per problem on stderr."""
    (policies_dir / "factual.yaml").write_text("domain: factual\nmax_tokens: -1\nwat: 1\nrules:\n  - nope: {}\n")
    (policies_dir / "math.yaml").write_text("domain: math\nmax_tokens: 5\nmin_tokens: 9\n")
    assert cli("validate", str(policies_dir)) == 1
    lines = capsys.readouterr().err.splitlines()
    path = str(policies_dir / "factual.yaml")
    assert f"{path}:2: max_tokens: must be between 1 and 1000000" in lines
    assert any(line.startswith(f"{path}:3: wat: unknown key 'wat'") for line in lines)
    assert any(line.startswith(f"{path}:5: rules[0].nope: unknown rule kind 'nope'") for line in lines)
    assert any(line.startswith(f"{policies_dir / 'math.yaml'}:3: min_tokens:") for line in lines)
    assert lines[-1].endswith(f"4 problem(s) in {policies_dir}")


def test_push_show_history_rollback(policies_dir: Path, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """push publishes changed files only; show, history and rollback read and write the same records."""
    assert cli("push", str(policies_dir), "--redis-url", redis_url) == 0
    assert capsys.readouterr().out.splitlines() == ["default: v1 published", "factual: v1 published"]
    assert cli("push", str(policies_dir), "--redis-url", redis_url) == 0
    assert "factual: v1 unchanged" in capsys.readouterr().out

    (policies_dir / "factual.yaml").write_text(FILES["factual.yaml"].replace("256", "100"))
    assert cli("push", str(policies_dir), "--redis-url", redis_url) == 0
    assert "factual: v2 published" in capsys.readouterr().out

    assert cli("show", "factual", "--format", "json", "--redis-url", redis_url) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["version"], shown["policy"]["max_tokens"], shown["policy"]["version"]) == (2, 100, 2)
    assert cli("show", "--redis-url", redis_url) == 0
    out = capsys.readouterr().out
    assert "# factual v2" in out and "max_tokens: 100" in out and "# math: no policy of its own" in out

    assert cli("rollback", "factual", "--to", "1", "--redis-url", redis_url) == 0
    assert "factual: v3 is now active (the document of v1)" in capsys.readouterr().out
    assert cli("history", "factual", "--redis-url", redis_url) == 0
    history = capsys.readouterr().out.splitlines()
    assert history[0].split()[:2] == ["*", "v3"]
    assert [line.split()[0] for line in history[1:]] == ["v2", "v1"]
    assert history[0].endswith("rollback:v1") and len(history) == 3

    assert cli("rollback", "factual", "--to", "42", "--redis-url", redis_url) == 1
    assert "no version 42" in capsys.readouterr().err


def test_commands_that_need_redis_say_so(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a Redis URL, or with an unreachable one, the command fails with a clear message."""
    monkeypatch.delenv("STOPGATE_REDIS_URL", raising=False)
    assert cli("history", "factual") == 1
    assert "STOPGATE_REDIS_URL" in capsys.readouterr().err
    assert cli("show", "--redis-url", "redis://127.0.0.1:1/0") == 1
    assert "unreachable" in capsys.readouterr().err
    assert cli("show", "sports", "--redis-url", "redis://127.0.0.1:1/0") == 1
    assert "unknown domain 'sports'" in capsys.readouterr().err


def test_domain_names_come_from_the_domain_files(tmp_path: Path) -> None:
    """The known domains are the `name` fields of the domain files; the built-in six without a dir."""
    (tmp_path / "a.yaml").write_text("name: astronomy\nexamples: [x]\n")
    (tmp_path / "b.yml").write_text("name: baking\n")
    assert known_domains(tmp_path) == ["astronomy", "baking"]
    assert known_domains(tmp_path / "missing") == list(DEFAULT_DOMAINS)
