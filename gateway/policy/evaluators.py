"""Incremental evaluators behind the policy engine: one per rule family.

Everything here is pure and O(1) amortised per token: rules keep rolling sums, bounded tails
or hash maps and never rescan the text. Each evaluator answers, after every token, with the cut
points it accepts now: ``BEFORE`` the token just fed (it is not sent), ``AFTER`` it, or 0 to go
on. Boundaries and fence state come from ``gateway.policy.text``.
"""

from __future__ import annotations

import re
from collections import deque

from gateway.policy.candidates import (
    KIND_RANK,
    Candidate,
    CandidateTracker,
    answer_key,
    pending_hesitation,
    plain_spelling,
)
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
from gateway.policy.text import BOUNDARY_FLAGS, PARAGRAPH, SENTENCE, Step, TextTracker

BEFORE, AFTER = 1, 2


class Evaluator:
    """One rule's incremental state; ``step`` returns the cut points it wants now (0 = go on)."""

    name = ""

    def step(self, s: Step, tracker: TextTracker) -> int:
        raise NotImplementedError


def _at(s: Step, flag: int) -> int:
    """The cuts that fall on a ``flag`` boundary; with no flag (``at: token``), both cuts."""
    if not flag:
        return BEFORE | AFTER
    return (BEFORE if s.before & flag else 0) | (AFTER if s.after & flag else 0)


class AnswerPatternEval(Evaluator):
    def __init__(self, spec: AnswerPattern) -> None:
        self.name = spec.kind
        self._rx = spec.compiled()
        self._window = spec.window
        self._flag = BOUNDARY_FLAGS.get(spec.at, 0)
        self._armed = False
        self._match_end = 0

    def step(self, s: Step, tracker: TextTracker) -> int:
        if not self._armed:
            if not s.text:
                return 0
            tail = tracker.tail
            m = self._rx.search(tail, max(0, len(tail) - self._window))
            # Complete once whitespace or two characters follow, so "42.5" is not taken for "42".
            if m is None or (m.end() + 2 > len(tail) and not tail[m.end() : m.end() + 1].isspace()):
                return 0
            self._armed = True
            self._match_end = tracker.tail_start + m.end()
        cuts = _at(s, self._flag)
        if self._match_end > s.start:
            cuts &= ~BEFORE  # the match ends inside this token: keep it
        return cuts


class SentencesEval(Evaluator):
    def __init__(self, spec: Sentences) -> None:
        self.name = spec.kind
        self._max = spec.max

    def step(self, s: Step, tracker: TextTracker) -> int:
        return _at(s, SENTENCE) if tracker.sentences >= self._max else 0


class ParagraphsEval(Evaluator):
    def __init__(self, spec: Paragraphs) -> None:
        self.name = spec.kind
        self._max = spec.max

    def step(self, s: Step, tracker: TextTracker) -> int:
        return _at(s, PARAGRAPH) if tracker.paragraphs >= self._max else 0


class CodeBlocksEval(Evaluator):
    def __init__(self, spec: CodeBlocks) -> None:
        self.name = spec.kind
        self._max = spec.max

    def step(self, s: Step, tracker: TextTracker) -> int:
        return BEFORE | AFTER if tracker.blocks >= self._max else 0


class RepetitionEval(Evaluator):
    """Counts token n-grams (exact tuples) inside a sliding window of n-gram positions."""

    def __init__(self, spec: Repetition) -> None:
        self.name = spec.kind
        self._n = spec.ngram
        self._max = spec.max_repeats
        self._span = spec.window - spec.ngram + 1 if spec.window else 0
        self._last: deque[int] = deque(maxlen=spec.ngram)
        self._counts: dict[tuple[int, ...], int] = {}
        self._order: deque[tuple[int, ...]] = deque()
        self._flag = BOUNDARY_FLAGS.get(spec.at, 0)
        self._armed = False

    def step(self, s: Step, tracker: TextTracker) -> int:
        if self._armed:
            return _at(s, self._flag)
        self._last.append(s.token_id)
        if len(self._last) < self._n:
            return 0
        key = tuple(self._last)
        seen = self._counts.get(key, 0) + 1
        self._counts[key] = seen
        if self._span:
            self._order.append(key)
            if len(self._order) > self._span:
                old = self._order.popleft()
                left = self._counts[old] - 1
                if left:
                    self._counts[old] = left
                else:
                    del self._counts[old]
        if seen > self._max:
            self._armed = True
            return _at(s, self._flag)
        return 0


class LoopEval(Evaluator):
    """Finds exact periodicity: a candidate period comes from the last occurrence of the current
    n-gram, then a run counts consecutive tokens equal to the token one period back."""

    def __init__(self, spec: Loop, budget: int) -> None:
        self.name = spec.kind
        self._n = spec.ngram
        self._max_period = spec.max_period
        self._repeats = spec.min_repeats
        self._span = spec.min_span
        self._align = spec.align == "budget"
        self._flag = BOUNDARY_FLAGS.get(spec.at, 0)
        self._budget = budget
        self._tokens: list[int] = []
        self._seen: dict[tuple[int, ...], int] = {}
        self._period = 0
        self._run = 0  # tokens equal to the token one period earlier, consecutively
        self._armed = False

    def step(self, s: Step, tracker: TextTracker) -> int:
        if self._armed and not self._align:
            return _at(s, self._flag)
        toks = self._tokens
        t = len(toks)
        toks.append(s.token_id)
        p = self._period
        if p and toks[t - p] == s.token_id:
            self._run += 1
        else:
            self._period = self._run = 0
            if self._align:
                self._armed = False  # the loop broke: the phase no longer predicts the end
        if t + 1 >= self._n:
            key = tuple(toks[t + 1 - self._n :])
            prev = self._seen.get(key)
            self._seen[key] = t
            if not self._period and prev is not None and t - prev <= self._max_period:
                self._period = t - prev
                self._run = self._n  # the n-gram equals the one a period back, token by token
        p = self._period
        if not self._armed and p:
            length = self._run + p  # the periodic tail, in tokens
            self._armed = length >= self._repeats * p and length >= self._span
        if not self._armed:
            return 0
        if self._align:
            return AFTER if (self._budget - (t + 1)) % self._period == 0 else 0
        return _at(s, self._flag)


class ConfidenceEval(Evaluator):
    def __init__(self, spec: Confidence) -> None:
        self.name = spec.kind
        self._window = spec.window
        self._min_lp = spec.min_mean_logprob
        self._max_ent = spec.max_mean_entropy
        self._flag = BOUNDARY_FLAGS.get(spec.at, 0)
        self._lps: deque[float] = deque()
        self._ents: deque[float] = deque()
        self._lp_sum = 0.0
        self._ent_sum = 0.0
        self._armed = False

    def step(self, s: Step, tracker: TextTracker) -> int:
        if not self._armed:
            self._lps.append(s.logprob)
            self._ents.append(s.entropy)
            self._lp_sum += s.logprob
            self._ent_sum += s.entropy
            if len(self._lps) > self._window:
                self._lp_sum -= self._lps.popleft()
                self._ent_sum -= self._ents.popleft()
            if len(self._lps) < self._window:
                return 0
            low = self._min_lp is not None and self._lp_sum < self._min_lp * self._window
            high = self._max_ent is not None and self._ent_sum > self._max_ent * self._window
            self._armed = low or high
            if not self._armed:
                return 0
        return _at(s, self._flag)


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]")


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def boxed_answer(text: str) -> str:
    """A probe's answer after a suffix ending in ``\\boxed{``: the text up to the brace that closes
    it (the first line when it never closes within the probe)."""
    depth = 1
    for i, c in enumerate(text):
        depth += {"{": 1, "}": -1}.get(c, 0)
        if depth == 0:
            return text[:i].strip()
    return _first_line(text)


def normalise_answer(text: str, mode: str) -> str:
    """The comparable form of a probe's answer; empty when there is none."""
    if mode == "boxed":
        return answer_key(boxed_answer(text))[:100]
    if mode == "number":
        m = _NUMBER.search(text)
        if m is None:
            return ""
        try:
            return repr(float(m.group().replace(",", "")))
        except ValueError:
            return ""
    return " ".join(_ARTICLES.sub(" ", _PUNCT.sub(" ", _first_line(text).lower())).split())[:100]


class ProbeEval(Evaluator):
    """Schedules probes and counts consecutive agreeing, confident answers (Dynasor / DEER)."""

    def __init__(self, spec: Probe) -> None:
        self.name = spec.kind
        self.spec = spec
        self._answer = ""
        self._streak = 0
        self.agreed_text = ""
        self.agreed_answer = ""

    def step(self, s: Step, tracker: TextTracker) -> int:
        return 0  # decisions come from answers, in ``answer``

    def due(self, tokens: int) -> bool:
        return tokens >= max(self.spec.start, 1) and tokens % self.spec.every == 0

    def dropped(self) -> None:
        self._streak = 0
        self._answer = ""

    def answer(self, text: str, confidence: float) -> bool:
        """Record one probe's result; True once ``agree`` in a row match."""
        norm = normalise_answer(text, self.spec.answer)
        if not norm or confidence < self.spec.min_confidence:
            self.dropped()
            return False
        self._streak = self._streak + 1 if norm == self._answer else 1
        self._answer = norm
        if self._streak < self.spec.agree:
            return False
        self.agreed_answer = boxed_answer(text) if self.spec.answer == "boxed" else _first_line(text)
        self.agreed_text = f"{self.spec.suffix.rstrip(' ')} {_first_line(text)}" if self.spec.append else ""
        return True


class ConvergenceEval(Evaluator):
    """Scores the candidate answers the thinking states; fires once one has converged and its
    last statement has stood ``settle`` tokens without a hesitation.

    Each scored statement is on probation for ``settle`` tokens: a hesitation then ("wait, ...")
    withdraws its points. ``tracker`` may be shared with the caller (the thinking engine feeds it,
    once per token); without one the evaluator keeps and feeds its own.
    """

    def __init__(self, spec: AnswerConvergence, tracker: CandidateTracker | None = None) -> None:
        self.name = spec.kind
        self._spec = spec
        self._weights = {
            "boxed": spec.boxed,
            "answer": spec.answer,
            "target": spec.target,
            "conclusion": spec.conclusion,
        }
        self._reset_rank = KIND_RANK[spec.reset_kind]
        self._own = tracker is None
        self.tracker = tracker if tracker is not None else CandidateTracker()
        self._seen = 0  # candidates of the tracker already scored
        self._leader = ""  # key of the last statement strong enough to reset the count
        self._scores: dict[str, int] = {}
        self._probation: Candidate | None = None  # the last scored statement, until it has stood
        self._until = 0
        self._converged = False  # the statement on probation brought its answer to ``agree``
        self._tokens = 0
        self.settled: Candidate | None = None  # the answer the rule stopped on

    def step(self, s: Step, tracker: TextTracker) -> int:
        self._tokens += 1
        cands = self.tracker
        if self._own:
            cands.feed(s.text)
        if self._seen < len(cands.candidates):
            for c in cands.candidates[self._seen :]:
                self._score(c)
            self._seen = len(cands.candidates)
        on = self._probation
        if on is None:
            return 0
        if cands.hesitations:  # the model doubted what it had just said: that statement does not count
            self._scores[on.key] = self._scores.get(on.key, 0) - self._weights[on.kind]
            self._probation = None
            return 0
        if self._tokens < self._until:
            return 0
        if not self._converged:
            self._probation = None  # it stood, but its answer has not converged yet
            return 0
        if self._tokens < self._spec.min_tokens or pending_hesitation(cands):
            return 0
        quoted = cands.spelling(on.key)
        if quoted is None or not plain_spelling(quoted.text):
            return 0  # stated only as "√51": no answer a LaTeX grader reads yet, so think on
        self.settled = quoted
        return AFTER

    def _score(self, c: Candidate) -> None:
        weight = self._weights[c.kind]
        if not weight or c.hedged or (c.kind in ("target", "conclusion") and c.key in self.tracker.given):
            return  # a guess, or a value of the question restated, is no sign of convergence
        if KIND_RANK[c.kind] >= self._reset_rank and c.key != self._leader:
            self._leader = c.key
            self._scores.clear()
        score = self._scores.get(c.key, 0) + weight
        self._scores[c.key] = score
        self._probation = c
        self._until = self._tokens + self._spec.settle
        self._converged = score >= self._spec.agree


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
