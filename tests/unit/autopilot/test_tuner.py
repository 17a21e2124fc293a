"""The tuner's decisions on synthetic samples: accept, reject, wait, hold, propose and roll back."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.autopilot.samples import Sample, SampleToken
from gateway.autopilot.tuner import Context, Decision, Version, decide
from gateway.policy.loader import parse_policy
from gateway.policy.rules import Sentences
from gateway.policy.schema import Policy

NOW = 1_000_000.0
SENTENCES = [f"Sentence number {i} says something {i}." for i in range(1, 7)]
ANSWER = " ".join(SENTENCES)


def policy(**overrides: Any) -> Policy:
    doc: dict[str, Any] = {
        "domain": "small_talk",
        "max_tokens": 128,
        "min_tokens": 0,
        "rules": [{"sentences": {"max": 8}}],
        "sample_full_rate": 1.0,
        "autopilot": {"target_agreement": 0.8, "min_samples": 12},
    }
    doc.update(overrides)
    doc = {k: v for k, v in doc.items() if v is not None}
    return parse_policy(doc, source="test", domains=["small_talk"], expect_domain="small_talk")


def tokens(text: str) -> tuple[SampleToken, ...]:
    """One token per word, each carrying its trailing space."""
    words = text.split(" ")
    return tuple(
        SampleToken(i, w + (" " if k < len(words) - 1 else ""), -0.1) for k, (i, w) in enumerate(enumerate(words))
    )


def sample(i: int, text: str = ANSWER, version: int = 1, stopped_at: int | None = None) -> Sample:
    return Sample(
        domain="small_talk",
        policy_version=version,
        policy_hash="h",
        request_id=f"r{i}",
        ts=NOW - 100 + i,
        max_tokens=128,
        events=tokens(text),
        stopped_at=stopped_at,
        stop_rule="sentences" if stopped_at is not None else None,
        finish_reason="stop",
    )


def context(active: Policy, version: int = 2, source: str = "autopilot", **kw: Any) -> Context:
    history = kw.pop("history", [Version(1, "seed:files", NOW - 5000, policy(autopilot=None))])
    return Context(
        active=Version(version, source, kw.pop("ts", NOW - 5000), active),
        history=history,
        now=NOW,
        interval_s=900.0,
        **kw,
    )


def run(ctx: Context, samples: list[Sample]) -> Decision:
    return asyncio.run(decide(ctx, samples))


def test_a_cheaper_version_within_the_bound_is_applied() -> None:
    """20 agreeing samples: the loose sentence limit is tightened and the evidence carries the bound."""
    d = run(context(policy()), [sample(i, version=2) for i in range(20)])
    assert d.action == "apply" and d.source == "autopilot"
    assert d.policy is not None and d.evidence is not None
    assert d.evidence.samples == 20 and d.evidence.lower_bound >= 0.8
    assert d.evidence.tokens_policy < d.evidence.tokens_before  # type: ignore[operator]
    ev = d.evidence_dict()
    assert ev["agreement_lower_bound"] >= 0.8 and ev["tokens_saved_pct"] > 20
    rule = d.policy.rules[0]
    assert isinstance(rule, Sentences) and rule.max == 2  # the opening (two sentences) must stay


def test_too_few_samples_waits() -> None:
    """Below the samples the bound needs (16 for 0.8), nothing is judged."""
    d = run(context(policy()), [sample(i) for i in range(15)])
    assert d.action == "keep" and not d.evaluated and "15 of 16" in d.reason


def test_an_unreachable_target_writes_nothing() -> None:
    """target 1.0: no finite sample count proves it, so autopilot never writes."""
    strict = policy(autopilot={"target_agreement": 1.0, "min_samples": 12}, quality={"metric": "final_number"})
    d = run(context(strict), [sample(i) for i in range(200)])
    assert d.action == "keep" and d.policy is None


def test_no_candidate_within_the_bound_is_rejected() -> None:
    """final_number with the number in the last sentence: every cheaper cut loses it, so keep."""
    texts = [f"{ANSWER} So the total is {i}." for i in range(20)]
    strict = policy(quality={"metric": "final_number"})
    d = run(context(strict), [sample(i, t) for i, t in enumerate(texts)])
    assert d.action == "keep" and d.evaluated and d.policy is None
    assert "no candidate" in d.reason


def test_propose_mode_only_proposes() -> None:
    """mode: propose returns the candidate as a proposal."""
    p = policy(autopilot={"target_agreement": 0.8, "min_samples": 12, "mode": "propose"})
    d = run(context(p), [sample(i) for i in range(20)])
    assert d.action == "propose" and d.policy is not None


def test_rate_limit_holds_a_second_change() -> None:
    """At most one change per interval: a change 10 s ago holds the next one."""
    d = run(context(policy(), last_change_ts=NOW - 10), [sample(i) for i in range(20)])
    assert d.action == "hold" and "rate limit" in d.reason


def test_a_persons_recent_edit_is_left_alone() -> None:
    """A person's edit of the rules 10 s ago (autopilot section unchanged) holds autopilot for the interval."""
    history = [Version(1, "seed:files", NOW - 5000, policy(rules=[{"sentences": {"max": 6}}]))]
    d = run(context(policy(), source="admin", ts=NOW - 10, history=history), [sample(i) for i in range(20)])
    assert d.action == "hold" and "person" in d.reason


def test_a_persons_edit_that_turns_autopilot_on_asks_for_tuning() -> None:
    """An edit that adds the autopilot section is a request to tune: no hold."""
    d = run(context(policy(), source="admin", ts=NOW - 10), [sample(i) for i in range(20)])
    assert d.action == "apply"


def test_fresh_samples_below_target_roll_back() -> None:
    """v3 keeps one sentence: its fresh samples lose the opening, so it goes back to v2 (which met it)."""
    aggressive = policy(rules=[{"sentences": {"max": 1}}])
    history = [Version(2, "admin", NOW - 8000, policy()), Version(1, "seed:files", NOW - 9000, policy(autopilot=None))]
    one_sentence = len(SENTENCES[0].split(" "))
    fresh = [sample(i, version=3, stopped_at=one_sentence) for i in range(20)]
    d = run(context(aggressive, version=3, history=history), fresh)
    assert d.action == "rollback" and d.rollback_to == 2
    assert d.source == "autopilot:rollback:v2"
    assert d.fresh is not None and d.fresh.lower_bound < 0.8 and d.fresh.basis == "live"
    assert d.policy is not None
    rule = d.policy.rules[0]
    assert isinstance(rule, Sentences) and rule.max == 8
    assert d.policy.autopilot == aggressive.autopilot


def test_fresh_samples_that_meet_the_target_keep_the_version() -> None:
    """Fresh samples that agree do not trigger the guard."""
    fresh = [sample(i, version=2) for i in range(20)]
    d = run(context(policy(rules=[{"sentences": {"max": 2}}])), fresh)
    assert d.action != "rollback"
    assert d.fresh is not None and d.fresh.meets_target
