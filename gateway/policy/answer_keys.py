"""The comparable form of a stated answer: equal values written differently share one key.

Pure string work: LaTeX presentation removed, fractions and decimals compared by value, and (when
lenient) unicode, units and plain-text spellings folded in, so ``\\dfrac{1}{2}``, ``0.5`` and
``$1/2$`` agree.
"""

from __future__ import annotations

import re

_UNICODE = {"π": "\\pi", "√": "\\sqrt", "×": "\\times", "·": "\\cdot", "∞": "\\infty", "−": "-", "÷": "/"}
UNITS = re.compile(
    r"(?:\s*(?:\\(?:text|mbox|mathrm)\s*\{\s*)?\b(?:degrees?|inches|inch|units?|cm|meters?|feet|ft|miles?|"
    r"dollars?|cents?|hours?|minutes?|seconds?|days?|years?|square|cubic|sq)\b\}?)+\s*$",
    re.IGNORECASE,
)
_PAREN_NUMBER = re.compile(r"\((-?\d+(?:\.\d+)?)\)")
_SQRT_PAREN = re.compile(r"\\?sqrt\s*\(([^()]*)\)")


def answer_key(text: str, *, lenient: bool = True) -> str:
    """The comparable form of an answer: "\\dfrac{1}{2}", "0.5" and "$1/2$" give the same key, so do
    "√51", "sqrt(51)" and "\\sqrt{51}", or "90 degrees" and "90^\\circ". ``lenient=False`` keeps
    to LaTeX presentation only (no unicode, units or plain-text spellings), as MATH-style graders do."""
    s = text
    if lenient:
        s = "".join(_UNICODE.get(c, c) for c in s)
        s = UNITS.sub("", s)
        s = _SQRT_PAREN.sub(r"\\sqrt{\1}", s)
    s = re.sub(r"\\sqrt\s*(\d+|[A-Za-z])", r"\\sqrt{\1}", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:left|right)(?![A-Za-z])|\\[,;:! ]|\$|\\%|%|\^\s*\{?\\circ\}?|°", "", s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    if re.match(r"^[A-Za-z](?:_\w)?=.", s) and s.count("=") == 1:
        s = s.split("=", 1)[1]
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1]
    value = numeric_value(s if not lenient else _PAREN_NUMBER.sub(r"\1", s))
    return repr(value) if value is not None else s


def plain_spelling(text: str) -> bool:
    """ASCII/LaTeX spelling (graders read ``\\sqrt{51}``, not ``√51`` nor ``(-1)/49``)."""
    return text.isascii() and "sqrt(" not in text and _PAREN_NUMBER.search(text) is None


def numeric_value(s: str) -> float | None:
    """The number ``s`` spells (``\\frac{a}{b}``, ``a/b``, ``1,234.5``), else None."""
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
