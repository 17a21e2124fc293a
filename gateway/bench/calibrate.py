"""``stopgate calibrate``: tune one domain's policy parameters on recorded full generations.

The domain's rows (its TRUE domain in the data) are run once with full inference (cached, as
for ``bench tradeoff``); then candidate policies are replayed over those generations. The search
is coordinate ascent over a grid per parameter (``GRIDS``, plus ``max_tokens`` and
``min_tokens``): change one parameter at a time, keep the change that saves the most tokens
while the constraints hold, repeat until nothing improves. The rule list itself (which families,
in which order) is the policy author's choice; calibration only moves numbers.

Constraints: with gold answers (math, factual) agreement with full inference >= the bound and
EM drop <= ``max_em_drop``; without gold, the share of answers whose core (first two
sentences, code: first code block) is kept >= the bound; code fences intact in every answer.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.bench.dataset import Row, load_rows
from gateway.bench.generations import Generation
from gateway.bench.metrics import CODE_DOMAIN, GOLD_DOMAINS, Item, domain_figures
from gateway.bench.replay import PolicyOutput
from gateway.errors import ConfigError
from gateway.policy.rules import RuleSpec
from gateway.policy.schema import Policy

if TYPE_CHECKING:
    from gateway.settings import Settings

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
class Score:
    """A candidate's figures on the domain's rows and whether it meets the constraints."""

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


@dataclass(frozen=True)
class Bounds:
    min_agreement: float = 0.95
    max_em_drop: float = 0.01


def score(
    domain: str, rows: Sequence[Row], gens: Sequence[Generation], outs: Sequence[PolicyOutput], bounds: Bounds
) -> Score:
    items = [Item(domain, r.gold, g.text, g.tokens, o.text, o.tokens) for r, g, o in zip(rows, gens, outs, strict=True)]
    fig = domain_figures(items)
    ok = True
    if domain in GOLD_DOMAINS:
        ok = fig["agreement"] >= bounds.min_agreement - 1e-9 and (
            fig["em_full"] - fig["em_policy"] <= bounds.max_em_drop + 1e-9
        )
    else:
        ok = fig["answer_kept"] >= bounds.min_agreement - 1e-9
    if domain == CODE_DOMAIN:
        ok = ok and fig["code_fence_intact"] >= 1.0
    return Score(ok, float(fig["saved_pct"]), int(fig["tokens_policy"]), fig)


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


# -- writing the policy file back, keeping its layout and comments -------------------------------

_TOP = re.compile(r"^(?P<key>[A-Za-z_]+):(?P<rest>.*)$")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if (
        re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ .-]*", text)
        and text.strip() == text
        and text not in ("true", "false", "null", "yes", "no")
    ):
        return text
    return json.dumps(text)


def rule_line(rule: RuleSpec, keys: Sequence[str]) -> str:
    """``  - kind: {k: v, ...}`` with ``keys`` (the file's own) plus every non-default field."""
    fields = msgspec.structs.fields(rule)
    shown = [f.name for f in fields if f.name in keys]
    for f in fields:
        value = getattr(rule, f.name)
        if f.name not in shown and (f.required or value != f.default):
            shown.append(f.name)
    inner = ", ".join(f"{name}: {_scalar(getattr(rule, name))}" for name in shown)
    return f"  - {rule.kind}: {{{inner}}}"


def render_policy(original: str, policy: Policy) -> str:
    """``original`` (the YAML file) with ``version``, budgets and the rules block replaced."""
    import yaml

    doc = yaml.safe_load(original) or {}
    old_rules = doc.get("rules") or []
    keys: list[list[str]] = []
    for item in old_rules:
        params = next(iter(item.values())) if isinstance(item, dict) and item else None
        keys.append(list(params) if isinstance(params, dict) else [])
    rules = [rule_line(r, keys[i] if i < len(keys) else []) for i, r in enumerate(policy.rules)]
    values = {"version": policy.version, "max_tokens": policy.max_tokens, "min_tokens": policy.min_tokens}
    out: list[str] = []
    lines = original.splitlines()
    i = 0
    while i < len(lines):
        m = _TOP.match(lines[i])
        if m and m["key"] in values:
            out.append(f"{m['key']}: {values.pop(m['key'])}")
        elif m and m["key"] == "rules":
            out.append("rules:")
            out += rules
            i += 1
            while i < len(lines) and not _TOP.match(lines[i]):
                i += 1
            continue
        else:
            out.append(lines[i])
        i += 1
    out += [f"{k}: {v}" for k, v in values.items()]
    return "\n".join(out) + "\n"


def diff(old: str, new: str, path: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{path}", f"b/{path}"))


# -- the whole calibration of one domain ----------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    domain: str
    path: Path
    rows: int
    start: Policy
    start_score: Score
    best: Policy
    best_score: Score
    steps: list[tuple[str, Score]]
    original: str
    proposed: str

    @property
    def changed(self) -> bool:
        return self.best.content_hash() != self.start.content_hash()


async def calibrate(
    settings: Settings,
    domain: str,
    data: Path,
    bounds: Bounds,
    *,
    names: Sequence[str],
    limit: int | None = None,
    rounds: int = 4,
    min_gain: float = 0.5,
    concurrency: int = 32,
    show_progress: bool = True,
) -> Calibration:
    """Load ``policies/<domain>.yaml``, search around it on ``data``'s rows of ``domain``.

    ``names`` are the known domain names (a policy must name one of them).
    """
    from gateway.bench.session import FULL_CAP, BenchSession, progress
    from gateway.policy.loader import parse_policy

    path = settings.policies_dir / f"{domain}.yaml"
    try:
        original = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the policy to calibrate ({exc.strerror or exc}); "
            f"start one from {settings.policies_dir / 'default.yaml'}"
        ) from None
    start = parse_policy(original, source=str(path), domains=names, expect_domain=domain)
    rows = load_rows(data, limit, domain=domain)
    session = await BenchSession.open(settings, concurrency=concurrency, show_progress=show_progress)
    try:
        gens = await session.full(rows)
        session.show_progress = False
        seen: dict[str, Score] = {}
        bar = progress(0, f"calibrating {domain}", show_progress)

        async def evaluate(candidate: Policy) -> Score:
            key = candidate.content_hash()
            if key not in seen:
                outs = await session.apply([candidate] * len(rows), gens, FULL_CAP)
                seen[key] = score(domain, rows, gens, outs, bounds)
                bar.total = len(seen)
                bar.update(1)
            return seen[key]

        steps: list[tuple[str, Score]] = []
        best, best_score = await search(
            start, evaluate, FULL_CAP, rounds, min_gain, lambda label, s: steps.append((label, s))
        )
        bar.close()
        start_score = await evaluate(start)
    finally:
        await session.close()
    if best.content_hash() != start.content_hash():
        best = best.with_version(start.version + 1)
    proposed = render_policy(original, best)
    parse_policy(proposed, source=str(path), domains=names, expect_domain=domain)  # what we write must load
    return Calibration(domain, path, len(rows), start, start_score, best, best_score, steps, original, proposed)
