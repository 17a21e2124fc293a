"""``stopgate bench agreement``: two trade-off runs' items compared per domain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.bench.agreement import Options, compare, run
from gateway.errors import ConfigError


def item(i: str, domain: str, full: str, policy: str) -> dict[str, object]:
    return {
        "id": i,
        "domain": domain,
        "text_full": full,
        "tokens_full": len(full.split()),
        "text_policy": policy,
        "tokens_policy": len(policy.split()),
    }


def test_identical_shares_are_per_domain_and_overall() -> None:
    """Identical full and policy texts are counted per domain; the final number is compared on its own."""
    a = {"1": item("1", "math", "so #### 4", "so #### 4"), "2": item("2", "factual", "Paris is it.", "Paris.")}
    b = {"1": item("1", "math", "thus #### 4", "so #### 4"), "2": item("2", "factual", "Paris is it.", "Paris.")}
    out = compare(a, b)
    assert out["rows"] == 2 and out["all"]["full_identical"] == 0.5
    assert out["domains"]["math"]["full_identical"] == 0.0
    assert out["domains"]["math"]["policy_identical"] == 1.0
    assert out["domains"]["math"]["full_same_final_number"] == 1.0
    assert out["domains"]["factual"]["full_identical"] == 1.0


def test_rows_in_one_run_only_are_counted_not_compared() -> None:
    """Ids present in one file only are reported as such and left out of the shares."""
    a = {"1": item("1", "math", "4", "4"), "2": item("2", "math", "5", "5")}
    out = compare(a, {"1": item("1", "math", "4", "4")})
    assert (out["rows"], out["only_a"], out["only_b"]) == (1, 1, 0)


def test_files_without_a_shared_id_are_a_config_error() -> None:
    """Nothing in common is an error, not an empty report."""
    with pytest.raises(ConfigError):
        compare({"1": item("1", "math", "4", "4")}, {"2": item("2", "math", "4", "4")})


def test_a_line_that_is_not_an_item_names_file_and_line(tmp_path: Path) -> None:
    """A broken items file is refused with its path and line number."""
    good = tmp_path / "a.jsonl"
    good.write_text(json.dumps(item("1", "math", "4", "4")) + "\n")
    bad = tmp_path / "b.jsonl"
    bad.write_text(json.dumps(item("1", "math", "4", "4")) + "\n{not json\n")
    with pytest.raises(ConfigError, match=r"b\.jsonl:2"):
        run(Options(a=good, b=bad), settings=None)  # type: ignore[arg-type]
