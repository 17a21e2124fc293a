"""The offline study: autopilot replayed over recorded full generations as if they were traffic.

Each domain's rows arrive in data-set order, one every ``gap_s`` simulated seconds, every one
sampled (``sample_full_rate: 1.0``). A request is served under the version active at its arrival
(exact replay of the pure engine over its recorded generation); its sample is what the live
pipeline would store (the generation cut at that version's budget); after every ``tune_every``
samples the tuner decides, exactly as the runner would, with the runner's rate limit. Reported per
domain: tokens and agreement of what clients got (against the generation at the full 512-token
cap, with the domain's metric), the changes autopilot made, and the same figures for the shipped
(hand-tuned) policy and for the starting policy held fixed. No Redis, no model: only the
generations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.autopilot.samples import Sample, SampleToken
from gateway.autopilot.tuner import Context, Version, decide
from gateway.offline.generations import Generation
from gateway.offline.replay import run_policy
from gateway.policy.engine import PolicyEngine
from gateway.policy.quality import Embed, QualitySpec, agrees
from gateway.policy.schema import Policy


@dataclass
class Served:
    """Running totals of what clients got under one way of choosing the policy."""

    requests: int = 0
    tokens: int = 0
    tokens_full: int = 0
    agreed: int = 0

    def add(self, tokens: int, tokens_full: int, agreed: bool) -> None:
        self.requests += 1
        self.tokens += tokens
        self.tokens_full += tokens_full
        self.agreed += agreed

    def figures(self) -> dict[str, Any]:
        n = max(1, self.requests)
        return {
            "requests": self.requests,
            "tokens_per_request": round(self.tokens / n, 1),
            "saved_pct": round(100 * (1 - self.tokens / self.tokens_full), 1) if self.tokens_full else 0.0,
            "agreement": round(self.agreed / n, 3),
        }


@dataclass
class DomainStudy:
    domain: str
    autopilot: Served = field(default_factory=Served)
    shipped: Served = field(default_factory=Served)
    start: Served = field(default_factory=Served)
    changes: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "autopilot": self.autopilot.figures(),
            "shipped": self.shipped.figures(),
            "start": self.start.figures(),
            "changes": self.changes,
            "final_policy": self.final,
        }


async def _serve(policy: Policy, gen: Generation) -> tuple[str, int, str | None]:
    out = await run_policy(PolicyEngine.for_policy(policy, max_tokens=gen.cap), gen, None)
    return out.text, out.tokens, out.stop_rule


def _sample(
    domain: str, version: int, i: int, gen: Generation, policy: Policy, served: int, rule: str | None
) -> Sample:
    """What the live pipeline stores: the generation up to this version's budget."""
    budget = min(policy.max_tokens, gen.cap)
    events = [SampleToken(e.token_id, e.text, e.logprob, e.entropy) for e in gen.events()[:budget]]
    return Sample(
        domain=domain,
        policy_version=version,
        policy_hash="",
        request_id=f"{domain}-{i}",
        ts=float(i),
        max_tokens=budget,
        events=tuple(events),
        stopped_at=served if rule is not None else None,
        stop_rule=rule,
        finish_reason="length" if gen.tokens > budget or gen.finish_reason == "length" else "stop",
    )


async def study_domain(
    domain: str,
    gens: Sequence[Generation],
    start: Policy,
    shipped: Policy,
    *,
    tune_every: int = 4,
    interval_s: float = 900.0,
    gap_s: float = 10.0,
    embed: Embed | None = None,
) -> DomainStudy:
    """Play ``gens`` (arrival order) through autopilot from ``start`` (which carries the autopilot section)."""
    assert start.autopilot is not None
    quality: QualitySpec | None = start.quality
    result = DomainStudy(domain)
    active = Version(1, "admin", -1.0, start)
    history: list[Version] = []
    samples: list[Sample] = []
    last_change: float | None = None
    since_run = 0
    for i, gen in enumerate(gens):
        now = i * gap_s
        full = gen.text
        for served, policy in ((result.autopilot, active.policy), (result.shipped, shipped), (result.start, start)):
            text, tokens, rule = await _serve(policy, gen)
            served.add(tokens, gen.tokens, agrees(quality, text, full, embed))
            if served is result.autopilot:
                samples.append(_sample(domain, active.version, i, gen, policy, tokens, rule))
        since_run += 1
        if since_run < tune_every or len(samples) < start.autopilot.decision_samples():
            continue
        since_run = 0
        ctx = Context(active, history, now, interval_s, last_change, embed=embed)
        decision = await decide(ctx, samples)
        if decision.action in ("apply", "rollback") and decision.policy is not None:
            history.insert(0, active)
            active = Version(active.version + 1, decision.source, now, decision.policy)
            last_change = now
            result.changes.append(
                {"after_request": i + 1, "version": active.version, "source": decision.source}
                | decision.evidence_dict()
            )
    result.final = msgspec.to_builtins(active.policy.to_document())
    return result


def with_autopilot(policy: Policy, target: float, min_samples: int, quality: QualitySpec | None = None) -> Policy:
    from gateway.policy.quality import AutopilotSpec

    return msgspec.structs.replace(
        policy,
        autopilot=AutopilotSpec(target_agreement=target, min_samples=min_samples),
        quality=quality or policy.quality,
        sample_full_rate=1.0,
    )


def loosened(policy: Policy) -> Policy:
    """``policy`` with every count limit (sentences, paragraphs, code blocks) at its grid's loosest value."""
    from gateway.offline.tuning import GRIDS

    rules = []
    for rule in policy.rules:
        grid = GRIDS.get(rule.kind, {})
        if "max" in grid and hasattr(rule, "max"):
            rule = msgspec.structs.replace(rule, max=max(grid["max"]))
        rules.append(rule)
    return msgspec.structs.replace(policy, rules=tuple(rules))


@dataclass(frozen=True)
class StudyOptions:
    data: Any  # Path of a JSONL data set (id, domain, query)
    limit_per_domain: int | None = None
    domains: tuple[str, ...] = ()
    start: str = "loose"  # loose: the shipped rules at their loosest counts; shipped: the shipped policy itself
    target: float = 0.9
    min_samples: int = 30
    tune_every: int = 4
    interval_s: float = 900.0
    gap_s: float = 10.0


async def run_study(settings: Any, options: StudyOptions, show_progress: bool = True) -> list[dict[str, Any]]:
    """Full generations of the rows (cached, as ``bench tradeoff``), then ``study_domain`` per domain."""
    from gateway.offline.dataset import load_rows
    from gateway.offline.session import ReplaySession
    from gateway.policy.loader import load_policies_dir

    rows = load_rows(options.data, options.limit_per_domain)
    shipped = load_policies_dir(settings.policies_dir, sorted({r.domain for r in rows}))
    if options.domains:
        rows = [r for r in rows if r.domain in options.domains]
    names = sorted({r.domain for r in rows})
    session = await ReplaySession.open(settings, show_progress=show_progress)
    try:
        gens = await session.full(rows)
    finally:
        await session.close()
    embed: Embed | None = None
    if any(
        (p := shipped.get(d)) is not None and p.quality is not None and p.quality.metric == "semantic" for d in names
    ):
        from gateway.classify.embedder import Embedder

        embedder = Embedder()
        embed = lambda texts: embedder.embed(texts).tolist()  # noqa: E731
    out = []
    for domain in names:
        base = shipped.get(domain) or shipped["default"]
        start = with_autopilot(
            loosened(base) if options.start == "loose" else base, options.target, options.min_samples
        )
        mine = [g for r, g in zip(rows, gens, strict=True) if r.domain == domain]
        result = await study_domain(
            domain,
            mine,
            start,
            base,
            tune_every=options.tune_every,
            interval_s=options.interval_s,
            gap_s=options.gap_s,
            embed=embed,
        )
        out.append(result.as_dict())
    return out
