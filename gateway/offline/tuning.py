"""Tuning a policy's numbers on recorded generations: a grid search under any grading.

``tune`` needs no model and no files: given a starting policy, recorded full generations
(``Recorded``: token events plus what grading needs) and a ``Grade`` function, it replays candidate
policies over the generations and returns the best one with its figures. The search is coordinate
ascent over a grid per parameter (``GRIDS``, plus ``max_tokens`` and ``min_tokens``): change one
parameter at a time, keep the change that saves the most tokens while the grade calls it
feasible, repeat until nothing improves. The rule list itself (which families, in which order) is
the policy author's choice; tuning only moves numbers. ``stopgate calibrate``
(``gateway.offline.calibrate``) and the autopilot (``gateway.autopilot.tuner``) grade differently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.offline.generations import FULL_CAP, Generation
from gateway.offline.replay import PolicyOutput, ProbeFn, replay_all
from gateway.policy.schema import Policy

GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "sentences": {"max": (1, 2, 3, 4, 5, 6, 8)},
    "paragraphs": {"max": (1, 2, 3, 4, 6)},
    "code_blocks": {"max": (1, 2, 3)},
    "repetition": {"ngram": (4, 6, 8, 12, 16), "max_repeats": (1, 2, 3), "window": (0, 128, 256, 512)},
    "loop": {"max_period": (32, 64, 128, 160, 256), "min_repeats": (2, 3, 4), "min_span": (8, 16, 24, 32, 48, 64)},
    "confidence": {
        "window": (16, 32, 64),
        "min_mean_logprob": (-3.0, -2.5, -2.0, -1.5, -1.0),
        "max_mean_entropy": (1.5, 2.0, 2.5, 3.0, 4.0),
    },
    "probe": {
        "every": (16, 32, 48, 64),
        "start": (0, 32, 64, 128),
        "agree": (1, 2, 3),
        "min_confidence": (0.5, 0.6, 0.7, 0.8, 0.9),
    },
    "answer_pattern": {},
    "load_budget": {},
}
POLICY_GRID: dict[str, tuple[int, ...]] = {
    "max_tokens": (64, 96, 128, 160, 192, 256, 320, 384, 448, 512),
    "min_tokens": (0, 4, 8, 16, 32, 48, 64),
}


@dataclass(frozen=True)
class Recorded:
    """One recorded full generation and what grading needs: the domain and gold answers, if any."""

    generation: Generation
    domain: str
    gold: Sequence[str] | None = None


@dataclass(frozen=True)
class Score:
    """A candidate's figures on the recorded generations and whether it meets the constraints.

    ``figures`` are ``gateway.offline.metrics.domain_figures``' (saved_pct, em_full, em_policy,
    agreement, answer_kept, code_fence_intact, tokens_full, tokens_policy, items).
    """

    feasible: bool
    saved_pct: float
    tokens: int
    figures: dict[str, Any]

    def key(self) -> tuple[bool, float]:
        # Feasible first, then tokens saved; an infeasible one is ranked by how close it gets.
        return (self.feasible, self.saved_pct if self.feasible else self.quality())

    def quality(self) -> float:
        f = self.figures
        return float(f["agreement"] if f["agreement"] is not None else f["answer_kept"])


Grade = Callable[[Sequence[Recorded], Sequence[PolicyOutput]], Score]
"""(recorded generations, a candidate's outputs on them, in order) -> the candidate's score."""


def neighbours(policy: Policy, cap: int) -> Iterator[tuple[str, Policy]]:
    """Every policy one grid step away in one parameter (valid ones only), with a label."""
    for name, values in POLICY_GRID.items():
        for value in values:
            if name == "max_tokens" and value > cap:
                continue
            candidate = msgspec.structs.replace(policy, **{name: value})
            if getattr(policy, name) != value and candidate.min_tokens < candidate.max_tokens:
                yield f"{name}={value}", candidate
    for index, rule in enumerate(policy.rules):
        for name, values in GRIDS.get(rule.kind, {}).items():
            if getattr(rule, name) is None:
                continue  # an unset optional threshold stays unset
            for value in values:
                if getattr(rule, name) == value:
                    continue
                changed = msgspec.structs.replace(rule, **{name: value})
                if changed.check():
                    continue
                rules = (*policy.rules[:index], changed, *policy.rules[index + 1 :])
                yield f"rules[{index}].{rule.kind}.{name}={value}", msgspec.structs.replace(policy, rules=rules)


Evaluate = Callable[[Policy], Awaitable[Score]]


async def search(
    start: Policy,
    evaluate: Evaluate,
    cap: int,
    max_rounds: int = 4,
    min_gain: float = 0.0,
    on_step: Callable[[str, Score], None] | None = None,
) -> tuple[Policy, Score]:
    """Coordinate ascent from ``start``: best single change per round until none improves.

    A feasible change must save at least ``min_gain`` percentage points more than the policy it
    replaces: smaller gains are noise of this data set and would not carry over to new queries.
    """
    best, best_score = start, await evaluate(start)
    for _ in range(max_rounds):
        step: tuple[str, Policy, Score] | None = None
        for label, candidate in neighbours(best, cap):
            s = await evaluate(candidate)
            if best_score.feasible and s.feasible and s.saved_pct < best_score.saved_pct + min_gain:
                continue
            if s.key() > (step[2].key() if step else best_score.key()):
                step = (label, candidate, s)
        if step is None:
            break
        best, best_score = step[1], step[2]
        if on_step is not None:
            on_step(step[0], best_score)
    return best, best_score


@dataclass(frozen=True)
class SearchOptions:
    """``cap``: the request budget candidates are replayed with (and the largest ``max_tokens``
    tried); ``rounds``: coordinate-ascent rounds at most; ``min_gain``: least extra saving in
    percentage points a change must bring to be taken."""

    cap: int = FULL_CAP
    rounds: int = 4
    min_gain: float = 0.5


@dataclass(frozen=True)
class Tuned:
    """The outcome of ``tune``: the start and the best policy found, their scores, the steps taken.

    ``best`` carries ``start.version + 1`` when it differs from ``start``.
    """

    start: Policy
    start_score: Score
    best: Policy
    best_score: Score
    steps: list[tuple[str, Score]] = field(default_factory=list)
    evaluated: int = 0

    @property
    def changed(self) -> bool:
        return self.best.content_hash() != self.start.content_hash()


async def tune(
    start: Policy,
    recorded: Sequence[Recorded],
    grade: Grade,
    *,
    probe: ProbeFn | None = None,
    options: SearchOptions = SearchOptions(),
    on_evaluated: Callable[[int], None] | None = None,
) -> Tuned:
    """Search around ``start`` on ``recorded`` (all of one domain) for the best policy under ``grade``.

    Each distinct candidate is replayed once over every generation, as the live pipeline would
    run it with ``max_tokens=options.cap``. ``probe`` answers probe rules (prompt + prefix +
    suffix -> a side generation); without it a policy with a probe rule raises ``LookupError``.
    ``on_evaluated(n)`` is called after each new candidate, with the count so far.
    """
    if not recorded:
        raise ValueError("no recorded generations to tune on")
    gens = [r.generation for r in recorded]
    seen: dict[str, Score] = {}

    async def evaluate(candidate: Policy) -> Score:
        key = candidate.content_hash()
        if key not in seen:
            outs = await replay_all([candidate] * len(gens), gens, probe, options.cap)
            seen[key] = grade(recorded, outs)
            if on_evaluated is not None:
                on_evaluated(len(seen))
        return seen[key]

    steps: list[tuple[str, Score]] = []
    best, best_score = await search(
        start, evaluate, options.cap, options.rounds, options.min_gain, lambda label, s: steps.append((label, s))
    )
    start_score = await evaluate(start)
    if best.content_hash() != start.content_hash():
        best = best.with_version(start.version + 1)
    return Tuned(start, start_score, best, best_score, steps, len(seen))
