"""Calibration: the parameter neighbourhood, the constrained search and the YAML written back."""

from __future__ import annotations

import asyncio

from gateway.bench.calibrate import Bounds, Score, neighbours, render_policy, score, search
from gateway.bench.dataset import Row
from gateway.bench.generations import Generation
from gateway.bench.replay import policy_engine, run_policy
from gateway.policy.loader import parse_policy
from gateway.policy.rules import Loop, Probe, Sentences
from gateway.policy.schema import Policy

DOMAINS = ("math", "factual", "code", "support", "small_talk", "general")

YAML = """\
domain: factual
version: 3
# kept as written
description: >-
  Short factual questions.
max_tokens: 256
min_tokens: 4
rules:
  - sentences: {max: 4}
  - loop: {max_period: 128, min_repeats: 3, min_span: 16}
shadow: false
"""


def test_neighbours_change_one_valid_parameter_at_a_time() -> None:
    """Each neighbour differs from the policy in exactly one field, and every one is valid."""
    policy = Policy(domain="factual", max_tokens=256, rules=(Sentences(max=4), Probe(every=32)))
    seen = list(neighbours(policy, cap=512))
    assert any(label == "rules[0].sentences.max=2" for label, _ in seen)
    assert not any(label.startswith("max_tokens=") and int(label.split("=")[1]) > 512 for label, _ in seen)
    for _, candidate in seen:
        changed = [f for f in ("max_tokens", "min_tokens", "rules") if getattr(candidate, f) != getattr(policy, f)]
        assert len(changed) == 1
        assert all(not rule.check() for rule in candidate.rules)


def test_render_keeps_layout_and_replaces_numbers_and_rules() -> None:
    """The written file keeps comments and description, bumps fields, and loads back to the policy."""
    start = parse_policy(YAML, source="factual.yaml", domains=DOMAINS, expect_domain="factual")
    best = Policy(
        domain="factual",
        version=4,
        description=start.description,
        max_tokens=192,
        min_tokens=4,
        rules=(Sentences(max=2), Loop(max_period=64, min_repeats=3, min_span=16)),
    )
    text = render_policy(YAML, best)
    assert "# kept as written" in text and "version: 4" in text and "max_tokens: 192" in text
    assert "  - sentences: {max: 2}" in text
    assert "  - loop: {max_period: 64, min_repeats: 3, min_span: 16}" in text
    again = parse_policy(text, source="factual.yaml", domains=DOMAINS, expect_domain="factual")
    assert again == best


def test_render_quotes_strings_that_need_it() -> None:
    """A probe suffix with a newline is written as a double-quoted YAML string that loads back."""
    doc = "domain: math\nversion: 1\nmax_tokens: 512\nrules:\n  - probe: {every: 32}\n"
    best = Policy(domain="math", version=2, max_tokens=512, rules=(Probe(every=16, suffix="\nAnswer: #"),))
    text = render_policy(doc, best)
    assert parse_policy(text, source="math.yaml", domains=DOMAINS, expect_domain="math") == best


def gen(text_parts: list[str]) -> Generation:
    n = len(text_parts)
    return Generation([1], 512, "stop", list(range(100, 100 + n)), text_parts, [-0.1] * n, [0.1] * n)


def test_search_saves_the_most_tokens_within_the_bounds() -> None:
    """Coordinate ascent lowers the sentence limit only as far as the answers (gold) survive."""
    parts = [
        "It",
        " is",
        " Paris",
        ".",
        " Paris",
        " is",
        " old",
        ".",
        " It",
        " has",
        " the",
        " Louvre",
        ".",
        " It",
        " is",
        " big",
        ".",
    ]
    rows = [Row("a", "factual", "q", ["paris"]), Row("b", "factual", "q", ["louvre"])]
    gens = [gen(parts), gen(parts)]

    async def evaluate(policy: Policy) -> Score:
        outs = [await run_policy(policy_engine(policy, 512), g, None) for g in gens]
        return score("factual", rows, gens, outs, Bounds(0.95, 0.01))

    start = Policy(domain="factual", max_tokens=512, rules=(Sentences(max=8),))
    best, best_score = asyncio.run(search(start, evaluate, cap=512))
    assert best_score.feasible and best_score.figures["em_policy"] == 1.0
    assert isinstance(best.rules[0], Sentences) and best.rules[0].max == 3  # "Louvre" is in sentence 3


def test_neighbours_keep_min_tokens_below_max_tokens() -> None:
    """No candidate has a floor at or above its budget (the loader would refuse it)."""
    policy = Policy(domain="support", max_tokens=64, min_tokens=48, rules=(Sentences(max=2),))
    assert all(c.min_tokens < c.max_tokens for _, c in neighbours(policy, cap=512))
