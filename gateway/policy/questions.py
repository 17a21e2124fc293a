"""What a question states and what it asks for, read once per request to judge the thinking's statements.

``question_values`` are the numbers it gives (restating them is no evidence of an answer);
``question_targets`` is a pattern of its subject being given a value ("Find $p(8)$" -> "p(8) =").
"""

from __future__ import annotations

import re

from gateway.policy.answer_keys import answer_key, numeric_value

RELATION = re.compile(r"[=<>]|\\(?:le|ge|leq|geq|neq|in)\b")
"""A relation sign: a span or value with one is a condition, not a subject or an answer."""

# Numbers the question states; not exponents ("x^3"), indices ("a_1") or digits inside names ("p2").
_QUESTION_VALUE = re.compile(r"\\d?frac\s*\{[^{}]*\}\s*\{[^{}]*\}|(?<![\^_\w.{])\d+(?:\.\d+)?(?![\w])")


def question_values(question: str | None) -> frozenset[str]:
    """Keys of the numbers a question states: restating them is no sign of having found the answer."""
    if not question:
        return frozenset()
    return frozenset(answer_key(m.group()) for m in _QUESTION_VALUE.finditer(question[:20_000]))


_ASKS = re.compile(r"\b(?:find|what|compute|evaluate|determine|calculate|simplify|solve|how)\b", re.IGNORECASE)
_LAST_SENTENCE = re.compile(r"[.?!]\s|\n")
_MATH_SPAN = re.compile(r"\$([^$]{1,40})\$|\\\((.{1,40}?)\\\)")
_ASY = re.compile(r"\[asy\].*?(?:\[/asy\]|$)", re.DOTALL)


def question_targets(question: str | None) -> re.Pattern[str] | None:
    """What the question asks for, as a pattern of its subject being given a value: the math spans
    of its asking sentences ("Find $p(8).$" -> ``p(8)``, "the smallest possible value of $a$" ->
    ``a``), each followed by ``=`` (or ``is`` for names longer than a letter)."""
    if not question:
        return None
    text = _ASY.sub(" ", question[:20_000])
    alternatives: list[str] = []
    for m in _MATH_SPAN.finditer(text):
        before = _LAST_SENTENCE.split(text[max(0, m.start() - 160) : m.start()])[-1]
        span = re.sub(r"\s+", "", m.group(1) or m.group(2) or "").strip(".,;:?")
        if not _ASKS.search(before) or not span or len(span) > 30 or RELATION.search(span):
            continue
        if numeric_value(span) is not None:
            continue
        body = r"\s*".join(re.escape(c) for c in span)
        verb = r"(?:=|\bis\b|\bequals\b)" if len(span) > 1 else "="
        alternatives.append(rf"(?<![A-Za-z0-9\\]){body}(?![A-Za-z0-9(_^])\s*(?:\\\)|\$)?\s*{verb}")
    return re.compile("|".join(alternatives)) if alternatives else None
