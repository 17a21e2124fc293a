"""Evaluators over the text's structure: an answer pattern, sentence, paragraph and code-block counts.

Boundaries and fence state come from ``gateway.policy.text``; the answer pattern searches only a
bounded tail of the text.
"""

from __future__ import annotations

from gateway.policy.evaluators.base import AFTER, BEFORE, Evaluator, at_boundary
from gateway.policy.rules import AnswerPattern, CodeBlocks, Paragraphs, Sentences
from gateway.policy.text import BOUNDARY_FLAGS, PARAGRAPH, SENTENCE, Step, TextTracker


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
        cuts = at_boundary(s, self._flag)
        if self._match_end > s.start:
            cuts &= ~BEFORE  # the match ends inside this token: keep it
        return cuts


class SentencesEval(Evaluator):
    def __init__(self, spec: Sentences) -> None:
        self.name = spec.kind
        self._max = spec.max

    def step(self, s: Step, tracker: TextTracker) -> int:
        return at_boundary(s, SENTENCE) if tracker.sentences >= self._max else 0


class ParagraphsEval(Evaluator):
    def __init__(self, spec: Paragraphs) -> None:
        self.name = spec.kind
        self._max = spec.max

    def step(self, s: Step, tracker: TextTracker) -> int:
        return at_boundary(s, PARAGRAPH) if tracker.paragraphs >= self._max else 0


class CodeBlocksEval(Evaluator):
    def __init__(self, spec: CodeBlocks) -> None:
        self.name = spec.kind
        self._max = spec.max

    def step(self, s: Step, tracker: TextTracker) -> int:
        return BEFORE | AFTER if tracker.blocks >= self._max else 0
