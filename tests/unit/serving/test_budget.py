"""The token budget is resolved in one place: client, policy cap, thinking budget, reserve."""

from __future__ import annotations

from gateway.policy.schema import Policy
from gateway.policy.thinking import EffortBudgets, ThinkingSpec
from gateway.serving.call import Budget

PLAIN = Policy(domain="general", max_tokens=128)
THINKING = Policy(
    domain="math", max_tokens=256, thinking=ThinkingSpec(max_tokens=512, effort=EffortBudgets(low=64), answer_reserve=8)
)


def test_the_policy_caps_the_client() -> None:
    """A client asking more than the policy allows gets the policy's cap; less is kept."""
    assert Budget.resolve(1000, PLAIN, default_max_tokens=512).total == 128
    assert Budget.resolve(20, PLAIN, default_max_tokens=512).total == 20
    assert Budget.resolve(None, PLAIN, default_max_tokens=512).total == 128


def test_no_policy_uses_the_default() -> None:
    """Without a policy the gateway's default budget applies."""
    assert Budget.resolve(None, None, default_max_tokens=77) == Budget(total=77, answer=77)


def test_a_thinking_budget_adds_to_the_answer_cap() -> None:
    """max_tokens covers both phases: the ceiling is the answer cap plus the thinking budget."""
    b = Budget.resolve(None, THINKING, default_max_tokens=512)
    assert (b.total, b.answer, b.thinking, b.thinking_cap) == (768, 256, 512, 512)


def test_effort_selects_the_thinking_budget() -> None:
    """reasoning_effort low picks its own budget; none means no thinking budget at all."""
    assert Budget.resolve(None, THINKING, default_max_tokens=512, effort="low").thinking == 64
    assert Budget.resolve(None, THINKING, default_max_tokens=512, effort="none").thinking is None


def test_a_small_request_keeps_room_for_the_answer() -> None:
    """A client budget below the thinking budget: thinking stops reserve tokens short of it."""
    b = Budget.resolve(40, THINKING, default_max_tokens=512)
    assert b.thinking_cap == 32 and b.answer_room(32) == 8
    assert Budget(total=5, answer=5, reserve=16).thinking_cap == 1
