"""Offline replay of thinking sections over reasoning traces: cuts, committed answers, report, baseline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

from gateway.errors import RequestError
from gateway.offline.reasoning import (
    KeyGrader,
    Trace,
    budget_matching,
    load_grader,
    load_traces,
    replay_trace,
    tokenize,
)
from gateway.offline.reasoning_report import markdown, measure, plot
from gateway.policy.rules import AnswerConvergence
from gateway.policy.schema import Policy
from gateway.policy.thinking import ThinkingSpec

_WORDS = re.compile(r"\s*\S+")

TRACES = [
    {  # converges early: "the answer is 12" then a long check
        "id": "t-1",
        "domain": "math",
        "model": "model-a",
        "query": "What is 3 times 4?",
        "gold": ["12"],
        "thinking": "Three fours. 4 + 4 + 4 = 12. So the answer is 12. Let me check it another way. "
        + "Four threes: 3 + 3 + 3 + 3 = 12 again. " * 6
        + "Yes.",
        "final_answer": "12",
    },
    {  # never states an answer: kept whole
        "id": "t-2",
        "domain": "math",
        "model": "model-b",
        "query": "Find $x$ if $2x = 10$.",
        "gold": ["5"],
        "thinking": "Divide both sides by two and simplify the left side carefully.",
        "final_answer": "5",
    },
    {  # long and wrong on the way: a budget cut commits to the last candidate before it
        "id": "t-3",
        "domain": "math",
        "model": "model-b",
        "query": "Compute $7 + 8$.",
        "gold": ["15"],
        "thinking": "So the sum is 14. " + "Hmm, recount the units one by one. " * 12 + "So the sum is 15.",
        "final_answer": "15",
    },
]


def words(text: str) -> tuple[list[int], list[int]]:
    """A stand-in tokenizer: one token per word with its leading space."""
    found = list(_WORDS.finditer(text))
    return [len(m.group()) for m in found], [m.start() for m in found]


def load_traces_from(rows: list[dict[str, object]]) -> list[Trace]:
    return [msgspec.convert(r, Trace) for r in rows]


@pytest.fixture
def traces_file(tmp_path: Path) -> Path:
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in TRACES))
    return path


def math_policy(thinking: ThinkingSpec | None) -> dict[str, Policy]:
    return {
        "math": Policy(domain="math", max_tokens=512, thinking=thinking),
        "default": Policy(domain="default", max_tokens=512),
    }


def test_tokens_partition_the_text() -> None:
    """Token pieces cover the thinking exactly, so a cut after k tokens keeps bounds[k] characters."""
    text = TRACES[0]["thinking"]
    tok = tokenize(text, words)
    assert "".join(tok.pieces(text)) == text and tok.bounds[-1] == len(text) and len(tok.bounds) == tok.tokens + 1


def test_convergence_cut_commits_to_a_kept_answer(traces_file: Path) -> None:
    """A converged trace is cut after its answer statement; the answer is in the kept prefix."""
    trace = load_traces(traces_file)[0]
    tok = tokenize(trace.thinking, words)
    cut = replay_trace(trace, tok, ThinkingSpec(rules=(AnswerConvergence(),)))
    assert cut.stop_rule == "answer_convergence" and cut.answer == "12"
    assert cut.tokens < tok.tokens and "12" in trace.thinking[: cut.chars]
    assert trace.thinking[: cut.chars].endswith("So the answer is 12. Let")  # the token that ended the statement


def test_doubt_right_after_the_answer_keeps_thinking() -> None:
    """ "So the answer is 12. Wait, ..." is not settled: the doubt is heard before the cut."""
    trace = load_traces_from([{**TRACES[0], "thinking": "So the answer is 12. Wait, that is wrong. Recount it all."}])[
        0
    ]
    cut = replay_trace(trace, tokenize(trace.thinking, words), ThinkingSpec(rules=(AnswerConvergence(),)))
    assert cut.stop_rule is None


def test_uncut_trace_keeps_its_final_answer_and_budget_cut_takes_the_last_candidate(traces_file: Path) -> None:
    """No rule fires: the trace's own answer; a budget cut: the last candidate before it."""
    second, third = load_traces(traces_file)[1:]
    uncut = replay_trace(second, tokenize(second.thinking, words), ThinkingSpec(rules=(AnswerConvergence(),)))
    assert uncut.stop_rule is None and uncut.answer == "5"
    budget = replay_trace(third, tokenize(third.thinking, words), ThinkingSpec(max_tokens=20))
    assert budget.stop_rule == "max_tokens" and budget.tokens == 20 and budget.answer == "14"
    off = replay_trace(third, tokenize(third.thinking, words), ThinkingSpec(mode="off"))
    assert off.tokens == 0 and off.answer is None


def test_report_follows_the_design_format(traces_file: Path, tmp_path: Path) -> None:
    """measure() gives DESIGN.md's JSON and item lines, per-source figures, a static baseline at equal tokens."""
    traces = load_traces(traces_file)
    toks = [tokenize(t.thinking, words) for t in traces]
    report, lines = measure(traces, toks, math_policy(ThinkingSpec(rules=(AnswerConvergence(),))), KeyGrader())
    ov = report["overall"]
    assert set(ov) == {
        "items",
        "tokens_thinking_full",
        "tokens_thinking_policy",
        "saved_pct",
        "agreement",
        "em_full",
        "em_policy",
    }
    assert ov["items"] == 3 and ov["agreement"] == 1.0 and ov["tokens_thinking_policy"] < ov["tokens_thinking_full"]
    static = report["baselines"]["static_budget"]
    assert set(static) >= {"max_tokens", "saved_pct", "agreement", "em"}
    assert abs(static["tokens"] - ov["tokens_thinking_policy"]) <= 2  # one global budget, same total
    assert set(report["sources"]) == {"model-a", "model-b"}
    assert [set(line) for line in lines] == [
        {
            "id",
            "tokens_thinking_full",
            "tokens_thinking_policy",
            "chars_thinking_policy",
            "answer_full",
            "answer_policy",
            "stop_rule",
        }
    ] * 3
    assert [line["answer_full"] for line in lines] == ["12", "5", "15"]
    text = markdown(report)
    assert "## Per source" in text and "| model-a |" in text
    plot(report, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_budget_matching_picks_the_closest_total() -> None:
    """The static budget is the global cap whose total kept tokens is closest to the target."""
    assert budget_matching([10, 20, 30], 30) == 10
    assert budget_matching([10, 20, 30], 44) == 17  # 10 + 17 + 17
    assert budget_matching([10, 20, 30], 45) == 17  # a tie (44, 46): the smaller budget
    assert budget_matching([10, 20, 30], 60) == 30


def test_grader_is_loaded_from_beside_the_traces(tmp_path: Path) -> None:
    """answer_norm.py beside the traces grades; without it the built-in key comparison does."""
    assert isinstance(load_grader(tmp_path / "traces.jsonl"), KeyGrader)
    (tmp_path / "answer_norm.py").write_text(
        "def equivalent(a, b):\n    return a.strip() == b.strip()\n\n"
        "def is_correct(pred, golds):\n    return pred is not None and any(equivalent(pred, g) for g in golds)\n"
    )
    grader = load_grader(tmp_path / "traces.jsonl")
    assert (
        grader.name.endswith("answer_norm.py") and grader.equivalent(" 1", "1") and not grader.equivalent("0.5", "1/2")
    )


def test_bad_trace_line_names_file_and_line(tmp_path: Path) -> None:
    """A malformed line is refused with its file and line number."""
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(TRACES[0]) + '\n{"id": "x"}\n')
    with pytest.raises(RequestError, match=r"bad.jsonl:2"):
        load_traces(path)


def test_builtin_grader_reads_latex_like_the_data_grader() -> None:
    """Without answer_norm.py, agreement compares LaTeX by value but no unicode or plain-text spellings."""
    grader = KeyGrader()
    assert grader.equivalent("\\dfrac{14}{3}", "14/3") and grader.equivalent("90^\\circ", "90")
    assert grader.equivalent("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\dfrac{\\pi}{2})")
    assert not grader.equivalent("√51", "\\sqrt{51}") and not grader.equivalent(None, "1")
    assert grader.is_correct("0.5", ["\\frac{1}{2}"]) and not grader.is_correct(None, ["1"])
