"""Rule specifications: strict decoding, semantic checks (unsafe patterns refused), the shipped policies."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.policy.loader import load_policies_dir
from gateway.policy.rules import (
    RULE_TYPES,
    AnswerPattern,
    Confidence,
    LoadBudget,
    Loop,
    Probe,
    Repetition,
    RuleSpec,
    Sentences,
)

POLICIES = Path(__file__).resolve().parents[3] / "policies"


def fields_of(problems: list[tuple[str, str]]) -> set[str]:
    return {field for field, _ in problems}


def test_registry_maps_every_kind_to_its_class() -> None:
    """RULE_TYPES holds each family once, keyed by the YAML key the class declares."""
    assert set(RULE_TYPES) == {
        "answer_pattern",
        "sentences",
        "paragraphs",
        "code_blocks",
        "repetition",
        "loop",
        "confidence",
        "probe",
        "load_budget",
        "answer_convergence",
    }
    for kind, cls in RULE_TYPES.items():
        assert cls.kind == kind and issubclass(cls, RuleSpec)


def test_unknown_parameter_is_an_error() -> None:
    """A misspelt parameter is refused, not ignored."""
    with pytest.raises(msgspec.ValidationError, match="ngrams"):
        msgspec.convert({"ngrams": 4}, Repetition)


def test_defaults_pass_their_own_checks() -> None:
    """Every family's defaults (plus required fields) are a valid rule."""
    required = {
        AnswerPattern: {"pattern": "####"},
        LoadBudget: {"queue_depth": 4, "max_tokens": 64},
        Confidence: {"min_mean_logprob": -2.0},
    }
    for cls in RULE_TYPES.values():
        spec = msgspec.convert(required.get(cls, {}), cls)
        assert spec.check() == [], cls.kind


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (Repetition(ngram=0), "ngram"),
        (Repetition(ngram=6, max_repeats=2, window=10), "window"),
        (Sentences(max=0), "max"),
        (Loop(align="budget", at="sentence"), "at"),
        (Loop(min_repeats=1), "min_repeats"),
        (Confidence(), "min_mean_logprob"),
        (Confidence(max_mean_entropy=-1.0), "max_mean_entropy"),
        (Probe(min_confidence=1.5), "min_confidence"),
        (Probe(suffix="  "), "suffix"),
        (Probe(every=0), "every"),
        (LoadBudget(queue_depth=-1, max_tokens=10), "queue_depth"),
        (AnswerPattern(pattern="####", window=8), "window"),
    ],
)
def test_check_names_the_bad_field(spec: RuleSpec, field: str) -> None:
    """Out-of-range parameters are reported against the field that holds them."""
    assert field in fields_of(spec.check())


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("(unclosed", "does not compile"),
        (r"(a+)+b", "catastrophic"),
        (r"(?:\w*\s)*x", "catastrophic"),
        (r"(\d)\1", "backreference"),
        (r"\d*", "empty string"),
        ("a" * 600, "characters long"),
    ],
)
def test_unsafe_or_useless_patterns_are_refused(pattern: str, why: str) -> None:
    """Patterns that cannot run safely after every token (or would stop at once) are refused."""
    problems = AnswerPattern(pattern=pattern).check()
    assert any(field == "pattern" and why in message for field, message in problems), problems


def test_shipped_policies_hold_valid_rules() -> None:
    """Every policies/*.yaml rule decodes strictly and passes its checks; all domains are covered."""
    domains = {p.stem for p in POLICIES.glob("*.yaml")}
    assert {"default", "math", "code", "factual", "support", "small_talk", "general"} <= domains
    # The loader decodes each rule strictly, runs its check() and checks domain = file name and
    # 0 <= min_tokens < max_tokens; any problem raises DefinitionError listing them all.
    shipped = load_policies_dir(POLICIES, domains)
    assert set(shipped) == domains
