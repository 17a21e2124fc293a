"""Evaluators over the token stream itself: repeated n-grams, exact loops, low confidence.

Each keeps rolling sums, bounded windows or hash maps of token ids and log-probabilities, and never
rescans what it has seen.
"""

from __future__ import annotations

from collections import deque

from gateway.policy.evaluators.base import AFTER, Evaluator, at_boundary
from gateway.policy.rules import Confidence, Loop, Repetition
from gateway.policy.text import BOUNDARY_FLAGS, Step, TextTracker


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
            return at_boundary(s, self._flag)
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
            return at_boundary(s, self._flag)
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
            return at_boundary(s, self._flag)
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
        return at_boundary(s, self._flag)


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
        return at_boundary(s, self._flag)
