"""Rule specifications: the typed, strict parameters of each stopping-rule family.

A policy's ``rules`` list holds one-key mappings in YAML (``- repetition: {ngram: 6}``); the key
selects a class from ``RULE_TYPES`` and the value is decoded into it strictly (unknown keys are
errors). ``check()`` adds the semantic checks msgspec cannot express (ranges, regex safety).
The engine (``gateway.policy.engine``) turns these specs into evaluators.

Families: ``answer_pattern``, ``sentences``, ``paragraphs``, ``code_blocks``, ``repetition``,
``loop``, ``confidence``, ``probe``, ``load_budget``, ``answer_convergence`` (thinking: the model
has settled on its answer). The hard budget and ``min_tokens`` are
policy-level fields; the code-fence guard is always on in the engine (no rule to forget).
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

import msgspec

from gateway.policy.regex_safety import regex_problems

#: Where a rule that has decided to stop may cut: right away, or at the next boundary of that kind.
Boundary = Literal["token", "sentence", "line", "paragraph"]

MAX_WINDOW_CHARS = 4096


class RuleSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every rule's parameters; ``kind`` is the YAML key that selects it."""

    kind: ClassVar[str] = ""

    def check(self) -> list[tuple[str, str]]:
        """Semantic problems as (field, message) pairs; types are already checked by msgspec."""
        return []


def _at_least(out: list[tuple[str, str]], field: str, value: float, low: float) -> None:
    if value < low:
        out.append((field, f"must be >= {low:g}, got {value:g}"))


def _at_most(out: list[tuple[str, str]], field: str, value: float, high: float) -> None:
    if value > high:
        out.append((field, f"must be <= {high:g}, got {value:g}"))


class AnswerPattern(RuleSpec, frozen=True, kw_only=True):
    """Stop once ``pattern`` has matched and is complete (followed by whitespace or two characters).

    The regex only runs on the last ``window`` characters, so its cost per token is bounded;
    ``at`` moves the cut from the match to the end of its sentence, line or paragraph.
    """

    kind: ClassVar[str] = "answer_pattern"
    pattern: str
    ignore_case: bool = False
    at: Literal["match", "sentence", "line", "paragraph"] = "match"
    window: int = 256

    def check(self) -> list[tuple[str, str]]:
        out = [("pattern", msg) for msg in regex_problems(self.pattern, self.ignore_case)]
        _at_least(out, "window", self.window, 16)
        _at_most(out, "window", self.window, MAX_WINDOW_CHARS)
        return out

    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)


class Sentences(RuleSpec, frozen=True, kw_only=True):
    """Stop at the end of the ``max``-th sentence (text inside code fences does not count)."""

    kind: ClassVar[str] = "sentences"
    max: int = 3

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        _at_least(out, "max", self.max, 1)
        return out


class Paragraphs(RuleSpec, frozen=True, kw_only=True):
    """Stop at the end of the ``max``-th paragraph (blank-line separated, outside code fences)."""

    kind: ClassVar[str] = "paragraphs"
    max: int = 2

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        _at_least(out, "max", self.max, 1)
        return out


class CodeBlocks(RuleSpec, frozen=True, kw_only=True):
    """Stop right after the ``max``-th fenced code block has closed."""

    kind: ClassVar[str] = "code_blocks"
    max: int = 1

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        _at_least(out, "max", self.max, 1)
        return out


class Repetition(RuleSpec, frozen=True, kw_only=True):
    """Stop when the same n-gram of tokens has been generated more than ``max_repeats`` times.

    ``window`` (tokens, 0 = the whole generation) limits how far back occurrences count, so
    that a phrase that legitimately recurs in a long answer is not taken for a loop. ``at``
    moves the cut to the end of the sentence (line, paragraph) in which the repeat was seen.
    """

    kind: ClassVar[str] = "repetition"
    ngram: int = 6
    max_repeats: int = 2
    window: int = 0
    at: Boundary = "token"

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        _at_least(out, "ngram", self.ngram, 1)
        _at_most(out, "ngram", self.ngram, 64)
        _at_least(out, "max_repeats", self.max_repeats, 1)
        _at_least(out, "window", self.window, 0)
        if 0 < self.window < self.ngram * (self.max_repeats + 1):
            out.append(("window", "must be 0 or hold max_repeats + 1 n-grams (>= ngram * (max_repeats + 1))"))
        return out


class Loop(RuleSpec, frozen=True, kw_only=True):
    """Stop when the generation has become exactly periodic (a degenerate greedy loop).

    The tail must repeat a period of at most ``max_period`` tokens ``min_repeats`` times and span
    at least ``min_span`` tokens. ``align: budget`` then waits until the number of tokens is
    congruent to the budget modulo the period, so that the text ends in the same phase of the
    loop as a run to the budget would: the last line (and final number) is the same. Otherwise
    ``at`` can move the cut to the next sentence, line or paragraph end.
    """

    kind: ClassVar[str] = "loop"
    ngram: int = 4
    max_period: int = 128
    min_repeats: int = 3
    min_span: int = 24
    align: Literal["none", "budget"] = "none"
    at: Boundary = "token"

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        _at_least(out, "ngram", self.ngram, 1)
        _at_most(out, "ngram", self.ngram, 32)
        _at_least(out, "max_period", self.max_period, 1)
        _at_most(out, "max_period", self.max_period, 4096)
        _at_least(out, "min_repeats", self.min_repeats, 2)
        _at_least(out, "min_span", self.min_span, 1)
        if self.align == "budget" and self.at != "token":
            out.append(("at", "must be token when align is budget (the cut point is the aligned token)"))
        return out


class Confidence(RuleSpec, frozen=True, kw_only=True):
    """Stop when the model has been unsure for a while: over the last ``window`` tokens the mean
    logprob is below ``min_mean_logprob`` or the mean entropy (nats) above ``max_mean_entropy``.
    The cut waits for the next boundary given by ``at``. Entropy needs a worker that reports it
    (a remote worker that only returns logprobs reports 0.0: use ``min_mean_logprob`` there).
    """

    kind: ClassVar[str] = "confidence"
    window: int = 32
    min_mean_logprob: float | None = None
    max_mean_entropy: float | None = None
    at: Boundary = "sentence"

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        _at_least(out, "window", self.window, 1)
        _at_most(out, "window", self.window, 4096)
        if self.min_mean_logprob is None and self.max_mean_entropy is None:
            out.append(("min_mean_logprob", "set min_mean_logprob or max_mean_entropy (or both)"))
        if self.min_mean_logprob is not None:
            _at_most(out, "min_mean_logprob", self.min_mean_logprob, 0.0)
        if self.max_mean_entropy is not None:
            _at_least(out, "max_mean_entropy", self.max_mean_entropy, 0.0)
        return out


class Probe(RuleSpec, frozen=True, kw_only=True):
    """Answer probes (Dynasor-CoT / DEER): every ``every`` tokens, from ``start`` on, ask the worker
    for ``max_tokens`` greedy tokens after the text so far + ``suffix``; stop once ``agree``
    consecutive probes give the same normalised answer, each with confidence (mean token
    probability) >= ``min_confidence``. ``answer: number`` compares the first number of each
    probe, ``text`` its first line (lowercased, punctuation and articles removed), ``boxed`` the
    text up to the brace that closes a ``\\boxed{`` ending the suffix (else the first line).
    In a policy's ``thinking`` section the probe is a thinking probe: it is asked after the
    end-of-thinking marker + ``suffix``, and agreement ends the thinking.
    ``append`` adds suffix + agreed answer to the output. Probes are not asked before the
    policy's ``min_tokens`` nor while a code fence is open.
    """

    kind: ClassVar[str] = "probe"
    every: int = 32
    start: int = 0
    suffix: str = "\nFinal answer:"
    max_tokens: int = 12
    agree: int = 2
    min_confidence: float = 0.8
    answer: Literal["number", "text", "boxed"] = "text"
    append: bool = False

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        _at_least(out, "every", self.every, 1)
        _at_least(out, "start", self.start, 0)
        if not self.suffix.strip():
            out.append(("suffix", "must contain some text to prompt the answer"))
        _at_most(out, "suffix", len(self.suffix), 200)
        _at_least(out, "max_tokens", self.max_tokens, 1)
        _at_most(out, "max_tokens", self.max_tokens, 64)
        _at_least(out, "agree", self.agree, 1)
        _at_least(out, "min_confidence", self.min_confidence, 0.0)
        _at_most(out, "min_confidence", self.min_confidence, 1.0)
        return out


class AnswerConvergence(RuleSpec, frozen=True, kw_only=True):
    """Stop thinking once the model has settled on an answer (see ``gateway.policy.candidates``).

    Each statement of a candidate answer scores by its kind (``boxed``, ``answer``: "the answer is
    X", ``target``: "p(8) = X" when the question asks for p(8), ``conclusion``: "so ... = X"; weight 0
    ignores a kind; a value the question states itself never scores); a candidate whose statements reach
    ``agree`` points has converged. A statement of a *different* candidate of at least the
    ``reset_kind`` kind starts the count afresh (the model changed its mind). The rule then waits
    ``settle`` tokens: a hesitation there ("wait", "but", "let me check" ...) withdraws the last
    statement, so the model's doubt is heard first. Never before ``min_tokens`` thinking tokens.
    """

    kind: ClassVar[str] = "answer_convergence"
    # Defaults tuned on reasoning traces (stopgate bench reasoning): one firm "the answer is X" or
    # \boxed{X}, or two "p(8) = X" statements; conclusions alone are mostly intermediate arithmetic,
    # and reasoning models write "wait, let me double-check" after nearly every answer (settle 0).
    agree: int = 3
    boxed: int = 3
    answer: int = 3
    target: int = 2
    conclusion: int = 0
    settle: int = 0
    min_tokens: int = 0
    reset_kind: Literal["conclusion", "target", "answer", "boxed"] = "answer"

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        _at_least(out, "agree", self.agree, 1)
        for name in ("boxed", "answer", "target", "conclusion"):
            _at_least(out, name, getattr(self, name), 0)
            _at_most(out, name, getattr(self, name), 100)
        if not (self.boxed or self.answer or self.target or self.conclusion):
            out.append(("boxed", "at least one statement kind needs a weight above 0"))
        _at_least(out, "settle", self.settle, 0)
        _at_most(out, "settle", self.settle, 4096)
        _at_least(out, "min_tokens", self.min_tokens, 0)
        return out


class LoadBudget(RuleSpec, frozen=True, kw_only=True):
    """A tighter budget of ``max_tokens`` while the worker queue is deeper than ``queue_depth``.

    It is a budget: it ends with finish_reason ``length`` (rule ``load_budget``), is not held back
    by an open code fence, and never cuts below the policy's ``min_tokens``.
    """

    kind: ClassVar[str] = "load_budget"
    queue_depth: int
    max_tokens: int

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        _at_least(out, "queue_depth", self.queue_depth, 0)
        _at_least(out, "max_tokens", self.max_tokens, 1)
        return out


RULE_TYPES: dict[str, type[RuleSpec]] = {
    cls.kind: cls
    for cls in (
        AnswerPattern,
        Sentences,
        Paragraphs,
        CodeBlocks,
        Repetition,
        Loop,
        Confidence,
        Probe,
        LoadBudget,
        AnswerConvergence,
    )
}
