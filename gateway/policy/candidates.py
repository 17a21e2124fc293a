"""Answer candidates in a reasoning model's thinking: what it says its answer is, and where.

A model writes candidate answers while it thinks ("so the answer is 42", ``\\boxed{42}``,
"**Final Answer**", "x = 5."). ``CandidateTracker`` follows the thinking text token by token,
splits it into statements (at line ends and sentence ends) and extracts, from each finished
statement, the candidates it states with their kind and position:

- ``boxed``: ``\\boxed{...}`` (balanced braces), the strongest: models box only a final answer;
- ``answer``: "the (final) answer is X", "answer: X", "X is the answer";
- ``target``: a statement that ends on "= X" about what the question asks for ("Find $p(8)$" ->
  "so p(8) = -1/49"); needs the question;
- ``conclusion``: a statement that ends on "= X" or "is X" after "so / therefore / thus / hence"
  (mostly intermediate arithmetic: rules should not trust these alone).

With the question, the values it states itself are ``given``: restating them is no evidence
(``gateway.policy.questions``).

``hedged`` marks a statement that doubts itself ("wait", "but", "let me check" ...), and the tracker
counts hesitations since the last candidate. Everything is incremental, bounded per statement,
and pure (no I/O, no clock). A candidate's ``key`` (``gateway.policy.answer_keys``: LaTeX
presentation removed, numbers compared by value) decides whether two statements agree.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from gateway.policy.answer_keys import UNITS, answer_key, plain_spelling
from gateway.policy.questions import RELATION, question_targets, question_values

Kind = Literal["boxed", "answer", "target", "conclusion"]
KIND_RANK: dict[str, int] = {"conclusion": 0, "target": 1, "answer": 2, "boxed": 3}

MAX_STATEMENT_CHARS = 600  # longer runs without a boundary are split here (bounded work per token)
MAX_ANSWER_CHARS = 48  # a longer "answer" is prose, not an answer

# A statement ends at a newline, or at . ! ? followed by whitespace (not "3.5", not "e.g.").
_BOUNDARY = re.compile(r"\n|[.!?](?=\s)")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = re.compile(
    r"\banswer\b(?:\s+to\s+(?:the|this)\s+(?:problem|question))?\s*"
    r"(?:is|should\s+be|will\s+be|must\s+be|=|:|(?P<maybe>would\s+be|could\s+be|might\s+be|may\s+be))",
    re.IGNORECASE,
)
_IS_THE_ANSWER = re.compile(
    r"(?:^|[\s(:,])([^\s,;:]{1,40})\s+(?:is|must\s+be)\s+(?:the|our)\s+(?:final\s+|correct\s+|right\s+)?answer\b",
    re.IGNORECASE,
)
# Words that leave an answer open ("likely 56", "approximately 66"); the value after them is kept.
_OPEN = re.compile(r"^(?:(?:likely|probably|possibly|maybe|perhaps|approximately|about|around|roughly|~|≈)\s*)+", re.I)
_FIRM = re.compile(r"^(?:(?:just|simply|indeed|exactly|then|also|still)\s+)+", re.I)
_CONCLUDES = re.compile(r"\b(?:so|therefore|thus|hence|which\s+gives|that\s+gives)\b", re.IGNORECASE)
_ENDS_ON_VALUE = re.compile(r"(?:=|\bis\b|\bequals\b|\bare\b)\s*([^=]{1,40}?)\s*$", re.IGNORECASE)
# Doubt about what was just said. Not "but" or "actually": reasoning models use them for every step.
_HESITATION = re.compile(
    r"\b(?:wait|hmm+|hold\s+on|mistake|wrong|incorrect|not\s+(?:sure|right|correct)|double[- ]check|re-?check|"
    r"let\s+me\s+(?:check|verify|double|re|make\s+sure|confirm)|no,)",
    re.IGNORECASE,
)
_WORD = re.compile(r"[A-Za-z]{3,}")
_LATEX_WORD = re.compile(r"\\[A-Za-z]+")
_TRIM = " \t\n$*.,;:!?\"'`"
# "try a = 1", "at x = 2", "if c = 0": a value being tried, not found.
_TRIAL = re.compile(
    r"\b(?:try|trying|test|testing|check|checking|at|when|for|if|let|suppose|assume|consider|plug|plugging|"
    r"with|say|take|set|setting|whether|maybe|perhaps|where)\s*(?:\\\(|\$)?\s*$",
    re.IGNORECASE,
)


class Candidate(msgspec.Struct, frozen=True):
    """One stated answer: its text exactly as written (``start``/``end`` character offsets into
    the thinking), its kind, and its comparable key."""

    text: str
    key: str
    kind: Kind
    start: int
    end: int
    hedged: bool = False  # stated as a guess ("would be", "likely", "?"): a candidate, but no evidence


_VARIABLE = re.compile(r"[A-Za-hj-z]")  # letters other than the imaginary unit i
_MATHY = re.compile(r"\d|\\[A-Za-z]|[π√∞]")


def _clean(raw: str, offset: int, kind: Kind) -> tuple[str, int, bool] | None:
    """``raw`` trimmed of presentation (and trailing units) at both ends: the answer text, its
    offset and whether it was left open ("likely 56"); None if it is no answer. A conclusion must
    be a value (a digit, a LaTeX command, π, √; no free variable), an answer a value or a name."""
    text = _FIRM.sub("", raw.strip(_TRIM))
    opened = _OPEN.match(text)
    if opened:
        text = text[opened.end() :]
    text = text.strip(_TRIM)
    for opener, closer in (("\\(", "\\)"), ("\\[", "\\]")):
        text = text.removeprefix(opener).removesuffix(closer).strip(_TRIM)
    text = UNITS.sub("", text).strip(_TRIM)
    if not text or len(text) > MAX_ANSWER_CHARS or text.count("{") != text.count("}"):
        return None
    bare = _LATEX_WORD.sub("", text)
    words = _WORD.findall(bare)
    if kind == "conclusion" and (_VARIABLE.search(bare) or not _MATHY.search(text) or RELATION.search(text)):
        return None
    if len(words) > 1 or (words and not _MATHY.search(text) and not words[0][0].isupper()):
        return None  # prose is not an answer; one name ("Evelyn") is
    return text, offset + raw.find(text), opened is not None


def _boxed(statement: str, base: int) -> list[Candidate]:
    out = []
    for m in _BOXED.finditer(statement):
        depth, i = 1, m.end()
        while i < len(statement) and depth:
            depth += {"{": 1, "}": -1}.get(statement[i], 0)
            i += 1
        if depth:
            continue
        raw = statement[m.end() : i - 1]
        text = raw.strip()
        if text and len(text) <= MAX_ANSWER_CHARS * 2:
            start = base + m.end() + (len(raw) - len(raw.lstrip()))
            out.append(Candidate(text, answer_key(text), "boxed", start, start + len(text)))
    return out


class CandidateTracker:
    """Splits the thinking into statements as tokens arrive and keeps the candidates found."""

    def __init__(self, question: str | None = None) -> None:
        self.given = question_values(question)  # keys of the values the question itself states
        self._targets = question_targets(question)
        self.candidates: list[Candidate] = []
        self._spelling: dict[str, Candidate] = {}  # per key, the statement to quote as the answer
        self.hesitations = 0  # hedged statements since the last candidate
        self.statements = 0
        self._buf = ""
        self._buf_start = 0  # absolute offset of _buf[0]
        self.chars = 0

    @property
    def current(self) -> str:
        """The statement being written (not finished yet)."""
        return self._buf

    @property
    def last(self) -> Candidate | None:
        return self.candidates[-1] if self.candidates else None

    def spelling(self, key: str) -> Candidate | None:
        """The statement of ``key`` best quoted as the answer: a plain (ASCII/LaTeX) spelling first,
        then the strongest kind, then the latest."""
        return self._spelling.get(key)

    def feed(self, text: str) -> int:
        """Take the next token's text; returns how many candidates it completed."""
        if not text:
            return 0
        buf = self._buf
        self.chars += len(text)
        # Fast path (most tokens): no newline or terminator in the token, and it does not complete a
        # terminator left at the end of the buffer, so no statement can end here.
        if (
            "\n" not in text
            and "." not in text
            and "!" not in text
            and "?" not in text
            and not (buf and buf[-1] in ".!?" and text[0].isspace())
            and len(buf) + len(text) <= MAX_STATEMENT_CHARS
        ):
            self._buf = buf + text
            return 0
        before = len(self.candidates)
        scan_from = max(0, len(buf) - 1)
        self._buf = buf + text
        cut = -1
        for m in _BOUNDARY.finditer(self._buf, scan_from):
            cut = m.end()
        if cut < 0 and len(self._buf) > MAX_STATEMENT_CHARS:
            cut = len(self._buf) - 1
        if cut > 0:
            done, self._buf = self._buf[:cut], self._buf[cut:]
            start = self._buf_start
            self._buf_start += cut
            self._statement(done, start)
        return len(self.candidates) - before

    def flush(self) -> int:
        """End of thinking: the unfinished last statement counts too."""
        before = len(self.candidates)
        if self._buf:
            self._statement(self._buf, self._buf_start)
            self._buf_start += len(self._buf)
            self._buf = ""
        return len(self.candidates) - before

    def _statement(self, text: str, base: int) -> None:
        # Several statements may have finished inside one token: split them, oldest first.
        pos = 0
        for m in _BOUNDARY.finditer(text):
            if m.end() - pos > 0:
                self._one(text[pos : m.end()], base + pos)
            pos = m.end()
        if pos < len(text):
            self._one(text[pos:], base + pos)

    def _one(self, s: str, base: int) -> None:
        if not s.strip():
            return
        self.statements += 1
        found = _boxed(s, base) or self._stated(s, base)
        if found:
            self.candidates.extend(found)
            self.hesitations = 0
            for c in found:
                have = self._spelling.get(c.key)
                if have is None or _quote_rank(c) >= _quote_rank(have):
                    self._spelling[c.key] = c
        elif _HESITATION.search(s):
            self.hesitations += 1

    def _stated(self, s: str, base: int) -> list[Candidate]:
        asked = s.rstrip().endswith("?")
        m = _ANSWER_IS.search(s)
        if m:
            got = _clean(s[m.end() :], base + m.end(), "answer")
            if got:
                return [_candidate(got, "answer", asked or m.group("maybe") is not None)]
        m = _IS_THE_ANSWER.search(s)
        if m:
            got = _clean(m.group(1), base + m.start(1), "answer")
            if got:
                return [_candidate(got, "answer", asked)]
        if self._targets is not None:
            t = self._targets.search(s)
            if t and not _TRIAL.search(s, max(0, t.start() - 24), t.start()):
                m = _ENDS_ON_VALUE.search(s, t.start())
                if m:
                    got = _clean(m.group(1), base + m.start(1), "conclusion")
                    if got:
                        return [_candidate(got, "target", asked)]
        c = _CONCLUDES.search(s)
        if c:
            m = _ENDS_ON_VALUE.search(s, c.end())
            if m:
                got = _clean(m.group(1), base + m.start(1), "conclusion")
                if got:
                    return [_candidate(got, "conclusion", asked)]
        return []


def _candidate(got: tuple[str, int, bool], kind: Kind, asked: bool) -> Candidate:
    text, start, opened = got
    return Candidate(text, answer_key(text), kind, start, start + len(text), hedged=opened or asked)


def _quote_rank(c: Candidate) -> tuple[bool, int]:
    return plain_spelling(c.text), KIND_RANK[c.kind]


def pending_hesitation(tracker: CandidateTracker) -> bool:
    """Whether the statement still being written doubts (bounded: one unfinished statement)."""
    return _HESITATION.search(tracker.current) is not None
