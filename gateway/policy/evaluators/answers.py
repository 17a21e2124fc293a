"""Evaluators that decide on the answer the model states: probes (side generations asked for the
answer so far, Dynasor / DEER) and answer convergence over the candidates of the thinking."""

from __future__ import annotations

import re

from gateway.policy.answer_keys import answer_key, plain_spelling
from gateway.policy.candidates import KIND_RANK, Candidate, CandidateTracker, pending_hesitation
from gateway.policy.evaluators.base import AFTER, Evaluator
from gateway.policy.rules import AnswerConvergence, Probe
from gateway.policy.text import Step, TextTracker

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
