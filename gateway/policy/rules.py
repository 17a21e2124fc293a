"""Rule specifications: the typed, strict parameters of each stopping-rule family.

A policy's ``rules`` list holds one-key mappings in YAML (``- repetition: {ngram: 6}``); the key
selects a class from ``RULE_TYPES`` and the value is decoded into it strictly (unknown keys are
errors). The engine (``gateway.policy.engine``) turns these specs into evaluators.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec


class RuleSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every rule's parameters; ``kind`` is the YAML key that selects it."""

    kind: ClassVar[str] = ""

    def check(self) -> list[tuple[str, str]]:
        """Semantic problems as (field, message) pairs; types are already checked by msgspec."""
        return []


class Repetition(RuleSpec, frozen=True, kw_only=True):
    """Stop when the same n-gram of tokens has been generated more than ``max_repeats`` times."""

    kind: ClassVar[str] = "repetition"
    ngram: int = 6
    max_repeats: int = 2

    def check(self) -> list[tuple[str, str]]:
        out = []
        if self.ngram < 1:
            out.append(("ngram", "must be >= 1"))
        if self.max_repeats < 1:
            out.append(("max_repeats", "must be >= 1"))
        return out


RULE_TYPES: dict[str, type[RuleSpec]] = {cls.kind: cls for cls in (Repetition,)}
