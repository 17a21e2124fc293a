"""Calibration: the search under its quality bounds, any grade function, and the YAML written back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gateway.offline.calibrate import Bounds, grade_within, score
from gateway.offline.generations import Generation
from gateway.offline.policy_file import render_policy
from gateway.offline.replay import PolicyOutput, policy_engine, run_policy
from gateway.offline.tuning import Recorded, Score, SearchOptions, search, tune
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
    recorded = [Recorded(gen(parts), "factual", ["paris"]), Recorded(gen(parts), "factual", ["louvre"])]

    async def evaluate(policy: Policy) -> Score:
        outs = [await run_policy(policy_engine(policy, 512), r.generation, None) for r in recorded]
        return score(recorded, outs, Bounds(0.95, 0.01))

    start = Policy(domain="factual", max_tokens=512, rules=(Sentences(max=8),))
    best, best_score = asyncio.run(search(start, evaluate, cap=512))
    assert best_score.feasible and best_score.figures["em_policy"] == 1.0
    assert isinstance(best.rules[0], Sentences) and best.rules[0].max == 3  # "Louvre" is in sentence 3


PARIS = ["It", " is", " Paris", ".", " Paris", " is", " old", ".", " It", " has", " the", " Louvre", ".", " It", " is"]


def test_tune_returns_the_best_policy_with_a_new_version_and_its_steps() -> None:
    """tune replays candidates over recorded generations, keeps the bound and bumps the version."""
    recorded = [Recorded(gen(PARIS), "factual", ["paris"]), Recorded(gen(PARIS), "factual", ["louvre"])]
    start = Policy(domain="factual", version=7, max_tokens=512, rules=(Sentences(max=8),))
    counts: list[int] = []
    tuned = asyncio.run(
        tune(start, recorded, grade_within(Bounds()), options=SearchOptions(min_gain=0.0), on_evaluated=counts.append)
    )
    assert tuned.changed and tuned.best.version == 8 and tuned.best_score.feasible
    assert isinstance(tuned.best.rules[0], Sentences) and tuned.best.rules[0].max == 3
    assert tuned.start_score.saved_pct < tuned.best_score.saved_pct
    assert tuned.steps and tuned.steps[-1][1] == tuned.best_score
    assert counts == list(range(1, tuned.evaluated + 1))  # each distinct candidate replayed once


def test_tune_takes_any_grade_function() -> None:
    """A caller's own grading decides: here an answer needs 8 tokens, so the policy lets 8 through."""
    recorded = [Recorded(gen(PARIS), "support")]

    def eight_tokens(recs: Sequence[Recorded], outs: Sequence[PolicyOutput]) -> Score:
        tokens, full = sum(o.tokens for o in outs), sum(r.generation.tokens for r in recs)
        feasible = all(o.tokens >= 8 for o in outs)
        return Score(feasible, 100.0 * (1 - tokens / full), tokens, {"agreement": tokens / full, "answer_kept": None})

    start = Policy(domain="support", max_tokens=512, rules=(Sentences(max=1),))
    tuned = asyncio.run(tune(start, recorded, eight_tokens))
    assert not tuned.start_score.feasible and tuned.best_score.feasible
    assert tuned.changed and tuned.start_score.tokens == 4 and tuned.best_score.tokens == 8


def test_generation_from_streamed_events() -> None:
    """A generation built from streamed token events replays like the recorded one."""
    original = gen(PARIS)
    again = Generation.from_events([1], original.events(), 512, "stop")
    assert again == original
