"""Quality metrics: when a stopped answer agrees with the full generation, per metric; the Wilson bound."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gateway.errors import ConfigError
from gateway.policy.quality import (
    AutopilotSpec,
    QualitySpec,
    agrees,
    answer_span_kept,
    code_intact,
    opening,
    opening_kept,
    same_final_number,
    samples_to_reach,
    wilson_lower,
)

FULL = "Paris is the capital of France. It lies on the Seine. It is large."


def test_final_number_same_last_number() -> None:
    """final_number: agreement means the same last number, thousands commas and trailing dots ignored."""
    assert same_final_number("so 12 + 30 = 1,042.", "so 12 + 30 = 1,042. The answer is 1042")
    assert not same_final_number("first 12", "first 12, then 13")
    assert same_final_number("no number yet", "none here either")
    assert not same_final_number("no number yet", "it is 4")


def test_answer_span_keeps_the_first_sentence() -> None:
    """answer_span: the full answer's first sentence, normalised, must be in the stopped one."""
    assert answer_span_kept("Paris is the capital of France.", FULL)
    assert answer_span_kept("paris is  the capital of France", FULL)  # case, punctuation, spaces
    assert not answer_span_kept("Paris is the capital", FULL)


def test_answer_span_of_a_one_line_answer_is_the_line() -> None:
    """answer_span: without a sentence end the first line is the span."""
    assert answer_span_kept("Paris\n", "Paris\nIt is in France")
    assert not answer_span_kept("Pa", "Paris\nIt is in France")


def test_code_fences_and_parsing() -> None:
    """code: the cut must keep the first block whole, leave no fence open and keep Python parsing."""
    full = "Here:\n```python\ndef f(x):\n    return x + 1\n```\nThen call it.\n```python\nprint(f(1))\n```\n"
    first = full[: full.index("Then")]
    assert code_intact(first, full)
    assert code_intact(full, full)
    assert not code_intact("Here:\n```python\ndef f(x):\n", full)  # fence left open
    assert not code_intact("Here:\n", full)  # the code is missing
    broken = "```python\ndef f(:\n```\n"
    assert code_intact(broken, broken)  # not the cut's fault: the full answer does not parse either
    assert not code_intact("```python\ndef f(:\n```\n", "```python\ndef f(x):\n    pass\n```\n")


def test_prefix_keeps_the_opening() -> None:
    """prefix (the default): the first two sentences of the full answer are kept."""
    assert opening(FULL) == "Paris is the capital of France. It lies on the Seine."
    assert opening_kept("Paris is the capital of France. It lies on the Seine.", FULL)
    assert not opening_kept("Paris is the capital of France.", FULL)
    assert agrees(None, "Paris is the capital of France. It lies on the Seine.", FULL)


def test_semantic_uses_the_embedding_passed_in() -> None:
    """semantic: cosine of the two embeddings against the threshold; without an embedder it is a ConfigError."""
    vectors = {"a": [1.0, 0.0], "b": [0.8, 0.6], "c": [0.0, 1.0]}

    def embed(texts: Sequence[str]) -> list[list[float]]:
        return [vectors[t] for t in texts]

    spec = QualitySpec(metric="semantic", threshold=0.75)
    assert agrees(spec, "a", "b", embed)  # cosine 0.8
    assert not agrees(spec, "a", "c", embed)
    with pytest.raises(ConfigError):
        agrees(spec, "a", "b")


def test_wilson_lower_bound_values() -> None:
    """The Wilson 95% lower bound: 12/12 is 0.758, 16/16 the first all-agreeing count to reach 0.8."""
    assert wilson_lower(12, 12) == pytest.approx(0.7575, abs=1e-4)
    assert wilson_lower(16, 16) >= 0.8 > wilson_lower(15, 15)
    assert wilson_lower(50, 100) == pytest.approx(0.4038, abs=1e-4)
    assert wilson_lower(0, 0) == 0.0
    assert samples_to_reach(0.8) == 16
    assert samples_to_reach(0.9) == 35


def test_decision_samples_covers_the_bound() -> None:
    """A spec decides only once full agreement could reach its target: max(min_samples, that count)."""
    assert AutopilotSpec(target_agreement=0.8, min_samples=12).decision_samples() == 16
    assert AutopilotSpec(target_agreement=0.8, min_samples=40).decision_samples() == 40
