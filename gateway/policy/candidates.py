"""Answer candidates in a reasoning model's thinking: what it says its answer is, and where.

A model writes candidate answers while it thinks ("so the answer is 42", ``\\boxed{42}``,
"**Final Answer**", "x = 5."). ``CandidateTracker`` follows the thinking text token by token,
splits it into statements (at line ends and sentence ends) and extracts, from each finished
statement, the candidates it states with their kind and position:

- ``boxed``: ``\\boxed{...}`` (balanced braces), the strongest: models box only a final answer;
- ``answer``: "the (final) answer is X", "answer: X", "X is the answer";
- ``conclusion``: a statement that ends on "= X" or "is X" after "so / therefore / thus / hence"
  (mostly intermediate arithmetic: rules should not trust these alone).

``hedged`` marks a statement that doubts itself ("wait", "but", "let me check" ...), and the tracker
counts hesitations since the last candidate. Everything is incremental, bounded per statement,
and pure (no I/O, no clock). ``answer_key`` is the comparable form of a candidate (LaTeX
presentation removed, numbers compared by value) used to decide whether two statements agree.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

Kind = Literal["boxed", "answer", "conclusion"]
KIND_RANK: dict[str, int] = {"conclusion": 0, "answer": 1, "boxed": 2}

MAX_STATEMENT_CHARS = 600  # longer runs without a boundary are split here (bounded work per token)
MAX_ANSWER_CHARS = 48  # a longer "answer" is prose, not an answer

# A statement ends at a newline, or at . ! ? followed by whitespace (not "3.5", not "e.g.").
_BOUNDARY = re.compile(r"\n|[.!?](?=\s)")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = re.compile(
    r"\banswer\b(?:\s+to\s+(?:the|this)\s+(?:problem|question))?\s*(?:is|should\s+be|would\s+be|will\s+be|must\s+be|=|:)"
    r"\s*(?:just\s+|simply\s+|indeed\s+)?",
    re.IGNORECASE,
)
_IS_THE_ANSWER = re.compile(
    r"(?:^|[\s(:,])([^\s,;:]{1,40})\s+(?:is|must\s+be)\s+(?:the|our)\s+(?:final\s+)?answer\b", re.I
)
_CONCLUDES = re.compile(r"\b(?:so|therefore|thus|hence|which\s+gives|that\s+gives)\b", re.IGNORECASE)
_ENDS_ON_VALUE = re.compile(r"(?:=|\bis\b|\bequals\b|\bare\b)\s*([^=]{1,40}?)\s*$", re.IGNORECASE)
_HESITATION = re.compile(
    r"\b(?:wait|but|hmm+|however|actually|alternatively|mistake|wrong|incorrect|not\s+sure|"
    r"let\s+me\s+(?:check|verify|double|re|make\s+sure|confirm|think|see)|double[- ]check|hold\s+on|no,)",
    re.IGNORECASE,
)
_WORD = re.compile(r"[A-Za-z]{3,}")
_LATEX_WORD = re.compile(r"\\[A-Za-z]+")
_TRIM = " \t\n$*.,;:!?\"'`"


class Candidate(msgspec.Struct, frozen=True):
    """One stated answer: its text exactly as written (``start``/``end`` character offsets into
    the thinking), its kind, and its comparable key."""

    text: str
    key: str
    kind: Kind
    start: int
    end: int


def answer_key(text: str) -> str:
    """The comparable form of an answer: "\\dfrac{1}{2}", "0.5" and "$1/2$" give the same key."""
    s = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:left|right)(?![A-Za-z])|\\[,;:! ]|\$|\\%|%|\^\s*\{?\\circ\}?|°", "", s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    if re.match(r"^[A-Za-z](?:_\w)?=.", s) and s.count("=") == 1:
        s = s.split("=", 1)[1]
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1]
    value = _number(s)
    return repr(value) if value is not None else s


def _number(s: str) -> float | None:
    m = re.fullmatch(r"([+-]?)\\frac\{(\d+(?:\.\d+)?)\}\{(\d+(?:\.\d+)?)\}", s) or re.fullmatch(
        r"([+-]?)(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)", s
    )
    if m:
        den = float(m.group(3))
        return None if den == 0 else (-1 if m.group(1) == "-" else 1) * float(m.group(2)) / den
    if re.fullmatch(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    if re.fullmatch(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", s):
        return float(s) + 0.0  # -0.0 -> 0.0
    return None


def _clean(raw: str, offset: int) -> tuple[str, int] | None:
    """``raw`` trimmed of presentation at both ends, with its offset; None if it is no answer."""
    text = raw.strip(_TRIM)
    for opener, closer in (("\\(", "\\)"), ("\\[", "\\]")):
        text = text.removeprefix(opener).removesuffix(closer).strip(_TRIM)
    if not text or len(text) > MAX_ANSWER_CHARS or text.count("{") != text.count("}"):
        return None
    # Prose is not an answer; one short word (a name) or a few LaTeX words are.
    if len(_WORD.findall(_LATEX_WORD.sub("", text))) > 1:
        return None
    return text, offset + raw.find(text)


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

    def __init__(self) -> None:
        self.candidates: list[Candidate] = []
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

    def feed(self, text: str) -> int:
        """Take the next token's text; returns how many candidates it completed."""
        if not text:
            return 0
        before = len(self.candidates)
        scan_from = max(0, len(self._buf) - 1)
        self._buf += text
        self.chars += len(text)
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
        elif _HESITATION.search(s):
            self.hesitations += 1

    def _stated(self, s: str, base: int) -> list[Candidate]:
        m = _ANSWER_IS.search(s)
        if m:
            got = _clean(s[m.end() :], base + m.end())
            if got:
                return [Candidate(got[0], answer_key(got[0]), "answer", got[1], got[1] + len(got[0]))]
        m = _IS_THE_ANSWER.search(s)
        if m:
            got = _clean(m.group(1), base + m.start(1))
            if got:
                return [Candidate(got[0], answer_key(got[0]), "answer", got[1], got[1] + len(got[0]))]
        c = _CONCLUDES.search(s)
        if c:
            m = _ENDS_ON_VALUE.search(s, c.end())
            if m:
                got = _clean(m.group(1), base + m.start(1))
                if got:
                    return [Candidate(got[0], answer_key(got[0]), "conclusion", got[1], got[1] + len(got[0]))]
        return []


def pending_hesitation(tracker: CandidateTracker) -> bool:
    """Whether the statement still being written doubts (bounded: one unfinished statement)."""
    return _HESITATION.search(tracker.current) is not None
