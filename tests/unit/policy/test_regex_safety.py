"""Regex safety: the patterns a policy may run after every token (refusals: test_rules, through the rule's check)."""

from __future__ import annotations

import pytest

from gateway.policy.regex_safety import regex_problems


@pytest.mark.parametrize(
    "pattern",
    [r"####\s*-?[\d,]*\.?\d+", r"(?i)the answer is:?\s*\$?-?\d[\d,]*(?:\.\d+)?", r"\d{1,3}(?:,\d{3})*"],
)
def test_ordinary_answer_patterns_are_accepted(pattern: str) -> None:
    """Typical answer regexes compile and count as safe."""
    assert regex_problems(pattern) == []
