"""Autopilot's decisions for one domain: accept a cheaper version, roll back, or keep.

Pure apart from the search itself (``gateway.offline.tuning.tune``, exact replay of the pure
engine over the stored samples, no model): no I/O, no clock (``now`` is passed in), no logging.

The order of the checks in ``decide``:

1. enough usable samples (``AutopilotSpec.decision_samples``: ``min_samples``, and as many as
   full agreement needs to reach the target bound);
2. the rate limit (one change per domain per ``interval_s``) and a person's edit: a version a
   person wrote less than ``interval_s`` ago is left alone, unless that edit turned autopilot on
   or changed its section (which asks for tuning);
3. the guard: once the active version has enough fresh samples of its own (live truth: what the
   clients got against the full generation), a Wilson lower bound below the target rolls it back
   to the newest earlier version whose replay over the samples meets the target;
4. the search: the best candidate that uses fewer tokens than the active version on the same
   samples and whose lower bound is at least the target becomes the new version (``mode:
   propose``: a proposal only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from gateway.autopilot.samples import Sample
from gateway.offline.generations import Generation
from gateway.offline.replay import PolicyOutput, replay_all
from gateway.offline.tuning import Grade, Recorded, Score, SearchOptions, tune
from gateway.policy.quality import Embed, QualitySpec, agrees, wilson_lower
from gateway.policy.schema import Policy

Action = Literal["apply", "propose", "rollback", "hold", "keep"]
AUTOPILOT_SOURCE = "autopilot"
MIN_GAIN_PCT = 0.5  # a change must save at least this many percentage points more than the one before


@dataclass(frozen=True)
class Evidence:
    """What a decision rests on; ``as_dict`` is what the history entry and status show."""

    samples: int
    agreed: int
    target_agreement: float
    metric: str
    tokens_full: int
    tokens_policy: int
    tokens_before: int | None = None  # the active version's tokens on the same samples
    changes: tuple[str, ...] = ()
    basis: str = "replay"  # replay of candidates over the samples, or "live" (what clients got)

    @property
    def agreement(self) -> float:
        return self.agreed / self.samples if self.samples else 0.0

    @property
    def lower_bound(self) -> float:
        return wilson_lower(self.agreed, self.samples)

    @property
    def meets_target(self) -> bool:
        return self.lower_bound >= self.target_agreement - 1e-12

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "samples": self.samples,
            "agreement": round(self.agreement, 4),
            "agreement_lower_bound": round(self.lower_bound, 4),
            "target_agreement": self.target_agreement,
            "metric": self.metric,
            "basis": self.basis,
            "tokens_full": self.tokens_full,
            "tokens_policy": self.tokens_policy,
            "tokens_per_request": round(self.tokens_policy / self.samples, 2) if self.samples else None,
        }
        if self.tokens_before is not None:
            out["tokens_before"] = self.tokens_before
            saved = 100.0 * (1 - self.tokens_policy / self.tokens_before) if self.tokens_before else 0.0
            out["tokens_saved_pct"] = round(saved, 2)
        if self.changes:
            out["changes"] = list(self.changes)
        return out


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    policy: Policy | None = None  # the version to write (apply, propose, rollback)
    evidence: Evidence | None = None
    rollback_to: int | None = None
    fresh: Evidence | None = None  # the active version's own fresh samples, when judged
    evaluated: bool = True  # False: too few samples to judge anything yet

    @property
    def source(self) -> str:
        return f"{AUTOPILOT_SOURCE}:rollback:v{self.rollback_to}" if self.action == "rollback" else AUTOPILOT_SOURCE

    def evidence_dict(self) -> dict[str, Any]:
        out = self.evidence.as_dict() if self.evidence is not None else {}
        out["reason"] = self.reason
        if self.fresh is not None:
            out["fresh"] = self.fresh.as_dict()
        return out


@dataclass(frozen=True)
class Version:
    """One entry of the domain's history as the tuner needs it."""

    version: int
    source: str
    ts: float
    policy: Policy


@dataclass(frozen=True)
class Context:
    """What the runner knows about the domain when it asks for a decision."""

    active: Version
    history: Sequence[Version]  # newest first, the active version excluded
    now: float
    interval_s: float
    last_change_ts: float | None = None  # the last change autopilot made to this domain
    rounds: int = 4
    embed: Embed | None = field(default=None, compare=False)


def is_person(source: str) -> bool:
    """Written by a person (admin API, CLI push, files reload, manual rollback), not seeded or tuned."""
    return not (source.startswith(AUTOPILOT_SOURCE) or source.startswith("seed"))


def usable(samples: Sequence[Sample], cap: int) -> list[Sample]:
    """Samples replay can judge a policy with budget ``cap`` on: ran to their own end, or at least ``cap``."""
    return [s for s in samples if s.finish_reason != "length" or s.max_tokens >= cap]


def recorded(samples: Sequence[Sample]) -> list[Recorded]:
    return [
        Recorded(Generation.from_events([], s.token_events("answer"), s.max_tokens, s.finish_reason), s.domain)
        for s in samples
    ]


def grade_for(quality: QualitySpec | None, target: float, embed: Embed | None) -> Grade:
    """calibrate's ``Grade`` with the domain's metric and the Wilson bound as the constraint."""

    def grade(recs: Sequence[Recorded], outs: Sequence[PolicyOutput]) -> Score:
        agreed = sum(agrees(quality, o.text, r.generation.text, embed) for r, o in zip(recs, outs, strict=True))
        full = sum(r.generation.tokens for r in recs)
        tokens = sum(o.tokens for o in outs)
        n = len(recs)
        figures = {
            "items": n,
            "agreed": agreed,
            "agreement": agreed / n if n else 0.0,
            "answer_kept": agreed / n if n else 0.0,
            "lower_bound": wilson_lower(agreed, n),
            "tokens_full": full,
            "tokens_policy": tokens,
        }
        saved = 100.0 * (1 - tokens / full) if full else 0.0
        return Score(figures["lower_bound"] >= target - 1e-12, saved, tokens, figures)

    return grade


def _evidence(score: Score, spec_target: float, metric: str, **extra: Any) -> Evidence:
    f = score.figures
    return Evidence(f["items"], f["agreed"], spec_target, metric, f["tokens_full"], f["tokens_policy"], **extra)


def live_evidence(
    samples: Sequence[Sample], quality: QualitySpec | None, target: float, embed: Embed | None
) -> Evidence:
    """The active version judged on what its clients actually got (``stopped_at``) vs the full answer."""
    agreed = 0
    full = policy = 0
    for s in samples:
        answer = s.answer_text()
        sent = answer if s.stopped_at is None else s.answer_text(s.stopped_at)
        agreed += agrees(quality, sent, answer, embed)
        n_answer = len(s.events) - s.thinking_tokens
        full += n_answer
        policy += n_answer if s.stopped_at is None else s.stopped_at
    metric = (quality or QualitySpec()).metric
    return Evidence(len(samples), agreed, target, metric, full, policy, basis="live")


async def replay_score(
    policy: Policy, samples: Sequence[Sample], cap: int, target: float, embed: Embed | None
) -> Score:
    recs = recorded(samples)
    outs = await replay_all([policy] * len(recs), [r.generation for r in recs], None, cap)
    return grade_for(policy.quality, target, embed)(recs, outs)


def _replayable(policy: Policy) -> bool:
    """Probe rules need the model to answer them: replay over samples cannot judge them."""
    return all(rule.kind != "probe" for rule in policy.rules)


async def decide(ctx: Context, samples: Sequence[Sample]) -> Decision:
    """The next step for ``ctx.active`` given the domain's stored samples (see the module doc)."""
    active = ctx.active.policy
    spec = active.autopilot
    if spec is None:
        return Decision("keep", "autopilot is off for this policy")
    if not _replayable(active):
        return Decision("keep", "the policy has probe rules, which replay over samples cannot judge")
    cap = active.max_tokens
    pool = usable(samples, cap)
    need = spec.decision_samples()
    if len(pool) < need:
        return Decision("keep", f"waiting for samples: {len(pool)} of {need}", evaluated=False)
    if ctx.last_change_ts is not None and ctx.now - ctx.last_change_ts < ctx.interval_s:
        ago = ctx.now - ctx.last_change_ts
        return Decision("hold", f"rate limit: last change {ago:.0f} s ago (interval {ctx.interval_s:.0f} s)")
    if is_person(ctx.active.source) and ctx.now - ctx.active.ts < ctx.interval_s and not _asks_for_tuning(ctx):
        ago = ctx.now - ctx.active.ts
        return Decision("hold", f"a person wrote v{ctx.active.version} {ago:.0f} s ago ({ctx.active.source})")
    target, metric = spec.target_agreement, (active.quality or QualitySpec()).metric

    fresh = [s for s in pool if s.policy_version == ctx.active.version]
    judged: Evidence | None = None
    if len(fresh) >= need:
        judged = live_evidence(fresh, active.quality, target, ctx.embed)
        if not judged.meets_target:
            return await _rollback(ctx, pool, judged, cap)

    start = active if active.version == ctx.active.version else active.with_version(ctx.active.version)
    tuned = await tune(
        start,
        recorded(pool),
        grade_for(active.quality, target, ctx.embed),
        options=SearchOptions(cap=cap, rounds=ctx.rounds, min_gain=MIN_GAIN_PCT),
    )
    before = tuned.start_score.tokens
    if not tuned.changed or not tuned.best_score.feasible or tuned.best_score.tokens >= before:
        best = _evidence(tuned.best_score, target, metric, tokens_before=before)
        return Decision(
            "keep",
            f"no candidate uses fewer tokens with a lower bound >= {target} "
            f"(best: agreement {best.agreement:.3f}, bound {best.lower_bound:.3f})",
            evidence=best,
            fresh=judged,
        )
    labels = tuple(label for label, _ in tuned.steps)
    evidence = _evidence(tuned.best_score, target, metric, tokens_before=before, changes=labels)
    action: Action = "propose" if spec.mode == "propose" else "apply"
    saved = evidence.as_dict()["tokens_saved_pct"]
    reason = (
        f"{', '.join(labels)}: {saved}% fewer tokens than v{ctx.active.version} on {evidence.samples} samples, "
        f"agreement {evidence.agreement:.3f} (bound {evidence.lower_bound:.3f} >= {target})"
    )
    return Decision(action, reason, tuned.best, evidence, fresh=judged)


def _asks_for_tuning(ctx: Context) -> bool:
    """The person's edit turned autopilot on or changed its section: tuning is what they asked for."""
    previous = ctx.history[0].policy.autopilot if ctx.history else None
    return previous != ctx.active.policy.autopilot


async def _rollback(ctx: Context, pool: Sequence[Sample], judged: Evidence, cap: int) -> Decision:
    """Back to the newest earlier version whose replay over the samples meets the target."""
    active = ctx.active.policy
    assert active.autopilot is not None
    target = active.autopilot.target_agreement
    seen = {active.content_hash()}
    for old in ctx.history:
        # The autopilot and quality sections stay as they are now: only the stopping numbers go back.
        candidate = msgspec.structs.replace(old.policy, autopilot=active.autopilot, quality=active.quality)
        key = candidate.content_hash()
        if key in seen or not _replayable(candidate):
            continue
        seen.add(key)
        score = await replay_score(candidate, pool, cap, target, ctx.embed)
        if score.feasible:
            evidence = _evidence(score, target, judged.metric)
            reason = (
                f"v{ctx.active.version} fell below the target on {judged.samples} fresh samples "
                f"(agreement {judged.agreement:.3f}, bound {judged.lower_bound:.3f} < {target}); "
                f"v{old.version} meets it (bound {evidence.lower_bound:.3f})"
            )
            action: Action = "rollback" if active.autopilot.mode == "apply" else "propose"
            return Decision(action, reason, candidate, evidence, rollback_to=old.version, fresh=judged)
    return Decision(
        "keep",
        f"v{ctx.active.version} is below the target on {judged.samples} fresh samples "
        f"(bound {judged.lower_bound:.3f} < {target}) and no earlier version meets it",
        fresh=judged,
    )
