"""The text side of the policy engine: where sentences, lines and paragraphs end, code fences.

``TextTracker`` walks each token's characters once (O(1) amortised per token) and fills a
``Step``: for the cut *before* the token just fed and the cut *after* it, which boundaries
those cuts fall on and whether a ``` fence is open there. It also keeps a bounded tail of the
output for the answer-pattern rule. Pure: no I/O, no clock.
"""

from __future__ import annotations

SENTENCE, LINE, PARAGRAPH = 1, 2, 4
BOUNDARY_FLAGS = {"sentence": SENTENCE, "line": LINE, "paragraph": PARAGRAPH}

_TERMINATORS = frozenset(".!?…")
_CLOSERS = frozenset("\"')]*_»”’")
_SPACES = frozenset(" \t\r\f\v\u00a0")
# Words whose trailing dot does not end a sentence ("e.g. this", "Dr. Who").
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs mr mrs ms dr st jr sr prof approx no fig cf al u.s a.m p.m inc ltd co".split()  # noqa: SIM905
)


class Step:
    """What one token did to the text: its event fields, where boundaries fall, fence state."""

    __slots__ = (
        "after",
        "before",
        "entropy",
        "fence_after",
        "fence_before",
        "logprob",
        "start",
        "text",
        "token_id",
    )

    def __init__(self) -> None:
        self.token_id = 0
        self.text = ""
        self.logprob = 0.0
        self.entropy = 0.0
        self.start = 0  # characters of output before this token
        self.before = 0  # boundary flags reached by cutting before this token
        self.after = 0  # ... and by cutting after it
        self.fence_before = False  # a ``` block is open at the cut before this token
        self.fence_after = False


class TextTracker:
    """Follows the output character by character: fences, sentences, paragraphs, a bounded tail.

    A fence is open while the output holds an odd number of "```" (counted like ``str.count``).
    A sentence ends at [.!?…] (plus closing quotes/brackets) followed by whitespace, except after
    abbreviations, initials and list numbers ("1."), or at a blank line after unterminated text.
    Text inside a fence counts as neither sentences nor paragraphs.
    """

    def __init__(self, tail_chars: int = 0) -> None:
        self.chars = 0
        self.sentences = 0
        self.paragraphs = 0
        self.blocks = 0  # closed fenced code blocks
        self.fence_open = False
        self.tail = ""
        self.tail_start = 0  # absolute offset of tail[0]
        self._tail_keep = tail_chars
        self._ticks = 0  # current run of backticks
        self._term = False  # last non-space chars are a candidate sentence end
        self._word = ""  # the current word (capped), for abbreviations and list numbers
        self._first_word = True  # the current word is the first on its line
        self._newlines = 0  # newlines since the last visible character
        self._sentence_text = False  # the current sentence has visible text
        self._paragraph_text = False
        self._last = ""  # the last visible character outside fences

    def advance(self, step: Step, text: str) -> None:
        """Consume ``text`` and fill ``step``'s boundary and fence fields."""
        step.text = text
        step.start = self.chars
        step.before = step.after = 0
        step.fence_before = self.fence_open
        for k, c in enumerate(text):
            if c == "`":
                self._ticks += 1
                if self._ticks % 3 == 0:
                    self.fence_open = not self.fence_open
                    if not self.fence_open:
                        self.blocks += 1
                if self.fence_open or self._ticks % 3 == 0:
                    continue
            else:
                self._ticks = 0
            if self.fence_open:
                continue
            if c == "\n" or c in _SPACES:
                self._space(step, text, k, c)
            else:
                self._visible(c)
        step.fence_after = self.fence_open
        self.chars += len(text)
        if self._tail_keep:
            self.tail += text
            if len(self.tail) > 2 * self._tail_keep:
                cut = len(self.tail) - self._tail_keep
                self.tail = self.tail[cut:]
                self.tail_start += cut

    def _space(self, step: Step, text: str, k: int, c: str) -> None:
        flags = 0
        if self._term:
            self._term = False
            self._sentence_text = False
            self.sentences += 1
            flags |= SENTENCE
        if c == "\n":
            flags |= LINE
            self._newlines += 1
            self._first_word = True
            # A paragraph ending in ":" introduces what follows (a list): it goes on.
            if self._newlines == 2 and self._paragraph_text and self._last != ":":
                self._paragraph_text = False
                self.paragraphs += 1
                flags |= PARAGRAPH
                if self._sentence_text:  # an unterminated heading or list item ends here
                    self._sentence_text = False
                    self.sentences += 1
                    flags |= SENTENCE
        elif self._word:
            self._first_word = False
        self._word = ""
        if flags:
            if not text[:k].strip():
                step.before |= flags
            if not text[k + 1 :].strip():
                step.after |= flags

    def _visible(self, c: str) -> None:
        self._last = c
        self._newlines = 0
        self._sentence_text = self._paragraph_text = True
        if len(self._word) < 12:
            self._word += c
        if c in _TERMINATORS:
            self._term = c != "." or self._dot_ends_sentence()
        elif c not in _CLOSERS:
            self._term = False

    def _dot_ends_sentence(self) -> bool:
        word = self._word.lstrip("(\"'*[").rstrip(".").lower()
        if len(word) == 1 and word.isalpha():
            return False  # an initial: "J. R. R. Tolkien"
        if word.isdigit() and self._first_word:
            return False  # a numbered list item: "1. Preheat the oven"
        return word not in _ABBREVIATIONS
