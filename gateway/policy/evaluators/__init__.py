"""Incremental evaluators behind the policy engine: one per rule family.

Everything here is pure and O(1) amortised per token: rules keep rolling sums, bounded tails
or hash maps and never rescan the text. Each evaluator answers, after every token, with the cut
points it accepts now (``base``). By what they read: the text's structure (``text``), the token
stream (``tokens``), the answer the model states (``answers``).
"""

from __future__ import annotations

from gateway.policy.evaluators.answers import ConvergenceEval, ProbeEval
from gateway.policy.evaluators.base import Evaluator
from gateway.policy.evaluators.text import AnswerPatternEval, CodeBlocksEval, ParagraphsEval, SentencesEval
from gateway.policy.evaluators.tokens import ConfidenceEval, LoopEval, RepetitionEval
from gateway.policy.rules import (
    AnswerConvergence,
    AnswerPattern,
    CodeBlocks,
    Confidence,
    Loop,
    Paragraphs,
    Probe,
    Repetition,
    RuleSpec,
    Sentences,
)


def build_evaluator(spec: RuleSpec, budget: int) -> Evaluator | None:
    """The evaluator for one rule (``None`` for budget rules, which the engine applies itself)."""
    if isinstance(spec, AnswerPattern):
        return AnswerPatternEval(spec)
    if isinstance(spec, Sentences):
        return SentencesEval(spec)
    if isinstance(spec, Paragraphs):
        return ParagraphsEval(spec)
    if isinstance(spec, CodeBlocks):
        return CodeBlocksEval(spec)
    if isinstance(spec, Repetition):
        return RepetitionEval(spec)
    if isinstance(spec, Loop):
        return LoopEval(spec, budget)
    if isinstance(spec, Confidence):
        return ConfidenceEval(spec)
    if isinstance(spec, Probe):
        return ProbeEval(spec)
    if isinstance(spec, AnswerConvergence):
        return ConvergenceEval(spec)
    return None
