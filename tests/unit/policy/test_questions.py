"""What a question states: its own numbers are given values, not evidence of an answer."""

from __future__ import annotations

from gateway.policy.answer_keys import answer_key
from gateway.policy.questions import question_values


def test_question_values_skip_exponents_and_indices() -> None:
    """The numbers a question states are given; exponents and subscripts are not."""
    values = question_values("Let $x^3 + ax^2 + 1 = 0$ with $a_1 = 7$ and 12 apples, 0.5 of them.")
    assert (
        answer_key("12") in values
        and answer_key("7") in values
        and answer_key("1") in values
        and answer_key("0.5") in values
    )
    assert answer_key("3") not in values and answer_key("2") not in values
