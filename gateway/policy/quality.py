"""The ``quality`` and ``autopilot`` sections of a policy, and the agreement metrics they name.

``quality`` names the metric by which a stopped answer is judged against the full generation of
the same request (agreement); ``autopilot`` lets the gateway re-tune the policy from sampled
full generations of live traffic while keeping agreement above ``target_agreement``.

The metrics (pure functions of the stopped answer and the full one; the stopped answer is a
prefix of the full generation, or the full generation itself when no rule stopped it):

* ``final_number``: the last number written is the same (or neither has one).
* ``answer_span``: the full answer's first answer span -- its first sentence or line,
  normalised (lowercase, punctuation and articles removed, whitespace collapsed) -- is kept.
* ``code``: code fences are intact (an even number of ```` ``` ````, or the full answer already left
  one open), every complete Python block of the stopped answer parses (unless the same block
  does not parse in the full answer either), and the full answer's first complete code block is
  kept (a cut before the code would otherwise pass trivially).
* ``semantic``: the cosine similarity of the stopped and the full answer under the classifier's
  sentence embedder is at least ``threshold``; the embedding function is passed in, so this module
  needs no model.
* ``prefix`` (the default): the full answer's opening -- its first two sentences or lines,
  at most 200 characters -- is kept.

``wilson_lower`` is the lower end of the 95% Wilson score interval: the bound autopilot holds
agreement to.
"""

from __future__ import annotations

import ast
import math
import re
import string
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from gateway.errors import ConfigError
from gateway.policy.text import Step, TextTracker

QualityMetric = Literal["final_number", "answer_span", "code", "semantic", "prefix"]

Embed = Callable[[Sequence[str]], Sequence[Sequence[float]]]
"""Texts -> one embedding vector each (the classifier's sentence embedder)."""

Z_95 = 1.959963984540054
"""The normal quantile of the two-sided 95% interval."""


class QualitySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    metric: QualityMetric = "prefix"
    threshold: float = 0.9  # semantic: cosine similarity at or above which two answers agree

    def check(self) -> list[tuple[str, str]]:
        if not 0.0 <= self.threshold <= 1.0:
            return [("threshold", "must be between 0 and 1")]
        return []


DEFAULT_QUALITY = QualitySpec()


class AutopilotSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``target_agreement``: the floor on the Wilson lower bound; ``min_samples``: before any change.

    ``mode``: ``apply`` writes the tuned version, ``propose`` only records the proposal.
    ``tune_every``: new samples of the domain between two tuning runs (0: the gateway's setting).
    """

    target_agreement: float
    min_samples: int = 30
    mode: Literal["apply", "propose"] = "apply"
    tune_every: int = 0

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not 0.0 < self.target_agreement <= 1.0:
            out.append(("target_agreement", "must be in (0, 1]"))
        if self.min_samples < 1:
            out.append(("min_samples", "must be >= 1"))
        if self.tune_every < 0:
            out.append(("tune_every", "must be >= 0"))
        return out

    def decision_samples(self) -> int:
        """Samples needed before a decision: ``min_samples``, and enough that full agreement can
        reach the target bound (a smaller count could only ever say "not proven")."""
        return max(self.min_samples, samples_to_reach(self.target_agreement))


# -- the Wilson bound ---------------------------------------------------------------------------


def wilson_lower(agreed: int, n: int, z: float = Z_95) -> float:
    """Lower end of the Wilson score interval for ``agreed`` successes in ``n`` trials (0 for n=0)."""
    if n <= 0:
        return 0.0
    p = agreed / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z2 / n))


def samples_to_reach(target: float, z: float = Z_95, limit: int = 100_000) -> int:
    """The smallest n for which n agreeing out of n has a lower bound >= ``target``."""
    if target <= 0:
        return 1
    # n / (n + z^2) >= target  <=>  n >= target z^2 / (1 - target)
    if target >= 1.0:
        return limit
    n = max(1, math.ceil(target * z * z / (1.0 - target) - 1e-9))
    while wilson_lower(n, n, z) < target - 1e-12 and n < limit:
        n += 1
    return n


# -- text helpers -------------------------------------------------------------------------------

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")
_FENCE = "```"
_BLOCK = re.compile(r"```([^\n`]*)\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = frozenset({"python", "py", "python3"})
OPENING_SENTENCES = 2
OPENING_MAX_CHARS = 200


def normalise(text: str) -> str:
    """Lowercase, punctuation and articles removed, whitespace collapsed (SQuAD/NQ style)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def final_number(text: str) -> str | None:
    """The last number written in ``text`` (thousands commas dropped), as text, or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    value = found[-1].replace(",", "").rstrip(".")
    try:
        return repr(float(value))
    except ValueError:
        return value


def opening(text: str, sentences: int = OPENING_SENTENCES, max_chars: int = OPENING_MAX_CHARS) -> str:
    """The first ``sentences`` sentences (as the policy engine counts them) or lines, whichever
    ends first, at most ``max_chars`` characters (a loop without sentence ends still has one)."""
    tracker, step = TextTracker(), Step()
    lines, line_text = 0, False
    for k, c in enumerate(text[:max_chars]):
        tracker.advance(step, c)
        if c == "\n":
            lines += line_text
            line_text = False
        elif not c.isspace():
            line_text = True
        if tracker.sentences >= sentences or lines >= sentences:
            return text[:k]  # the boundary is the whitespace after the sentence or line
    return text[:max_chars]


def first_code_block(text: str) -> str | None:
    """``text`` up to the end of its first complete fenced block, or None without one."""
    start = text.find(_FENCE)
    if start < 0:
        return None
    end = text.find(_FENCE, start + 3)
    return text[: end + 3] if end >= 0 else None


def _python_blocks(text: str) -> list[str]:
    return [body for tag, body in _BLOCK.findall(text) if tag.strip().lower() in _PYTHON_TAGS]


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


# -- the metrics --------------------------------------------------------------------------------


def same_final_number(stopped: str, full: str) -> bool:
    return final_number(stopped) == final_number(full)


def answer_span_kept(stopped: str, full: str) -> bool:
    """The full answer's first sentence or line, normalised, is at the start of the stopped one."""
    span = normalise(opening(full, sentences=1))
    return normalise(stopped).startswith(span)


def code_intact(stopped: str, full: str) -> bool:
    if stopped.count(_FENCE) % 2 and full.count(_FENCE) % 2 == 0:
        return False  # the cut left a fence open that the full answer closed
    block = first_code_block(full)
    if block is not None and not stopped.startswith(block):
        return False
    full_parses = {code: _parses(code) for code in _python_blocks(full)}
    return all(_parses(code) or not full_parses.get(code, True) for code in _python_blocks(stopped))


def opening_kept(stopped: str, full: str) -> bool:
    return stopped.startswith(opening(full).rstrip())


def semantic_agree(stopped: str, full: str, embed: Embed, threshold: float) -> bool:
    if stopped == full:
        return True
    a, b = embed([stopped, full])
    return cosine(a, b) >= threshold


_TEXT_METRICS: dict[str, Callable[[str, str], bool]] = {
    "final_number": same_final_number,
    "answer_span": answer_span_kept,
    "code": code_intact,
    "prefix": opening_kept,
}


def agrees(spec: QualitySpec | None, stopped: str, full: str, embed: Embed | None = None) -> bool:
    """Whether the stopped answer agrees with the full one under ``spec`` (default: ``prefix``).

    ``semantic`` needs ``embed``; without it a ``ConfigError`` says so.
    """
    spec = spec or DEFAULT_QUALITY
    if spec.metric == "semantic":
        if embed is None:
            raise ConfigError("the semantic quality metric needs the classifier's embedder")
        return semantic_agree(stopped, full, embed, spec.threshold)
    return _TEXT_METRICS[spec.metric](stopped, full)
