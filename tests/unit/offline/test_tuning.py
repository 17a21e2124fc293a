"""Tuning: the parameter neighbourhood the search walks, one valid change at a time."""

from __future__ import annotations

from gateway.offline.tuning import neighbours
from gateway.policy.rules import Probe, Sentences
from gateway.policy.schema import Policy


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


def test_neighbours_keep_min_tokens_below_max_tokens() -> None:
    """No candidate has a floor at or above its budget (the loader would refuse it)."""
    policy = Policy(domain="support", max_tokens=64, min_tokens=48, rules=(Sentences(max=2),))
    assert all(c.min_tokens < c.max_tokens for _, c in neighbours(policy, cap=512))
