"""The ``thinking`` section of a policy as typed values (``ThinkingSpec``), apart from its engine.

Kept on its own so that the policy schema can hold a thinking section without importing the
engine (``gateway.policy.thinking``), which itself builds on the engine's decision types.
"""

from __future__ import annotations

import msgspec

from gateway.policy.rules import LoadBudget, RuleSpec
from gateway.worker.protocol import ThinkingMode


class EffortBudgets(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Thinking budget per ``reasoning_effort``; None: the section's ``max_tokens``."""

    low: int | None = None
    medium: int | None = None
    high: int | None = None


class ThinkingSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    mode: ThinkingMode = "model"
    max_tokens: int | None = None  # the thinking budget; None: only the request budget bounds it
    rules: tuple[RuleSpec, ...] = ()
    effort: EffortBudgets = EffortBudgets()
    answer_reserve: int = 16  # a forced end always leaves at least this many tokens for the answer

    def budget_for(self, effort: str | None) -> int | None:
        """The thinking budget for a request's ``reasoning_effort`` (``none`` is handled by the caller)."""
        chosen = getattr(self.effort, effort, None) if effort in ("low", "medium", "high") else None
        return chosen if chosen is not None else self.max_tokens

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.max_tokens is not None and self.max_tokens < 1:
            out.append(("max_tokens", "must be >= 1"))
        if self.answer_reserve < 1:
            out.append(("answer_reserve", "must be >= 1"))
        for name in ("low", "medium", "high"):
            value = getattr(self.effort, name)
            if value is not None and value < 1:
                out.append((f"effort.{name}", "must be >= 1"))
        for index, rule in enumerate(self.rules):
            if isinstance(rule, LoadBudget):
                out.append((f"rules.{index}.{rule.kind}", "is a budget of the answer, not a thinking rule"))
        return out
