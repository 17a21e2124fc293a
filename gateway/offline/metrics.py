"""Answer-quality metrics of the trade-off benchmark (pure functions, no I/O).

Definitions (DESIGN.md, "Measuring the trade-off"):
  * math EM: the last number in the output equals a gold number;
  * factual EM: a normalised gold answer (lowercase, punctuation and articles removed,
    whitespace collapsed) is contained in the normalised output;
  * agreement with full inference: math, the same final number; factual, the share of items
    correct under full inference that are still correct;
  * code-fence integrity: a code answer's ``` count is even, or full inference already left
    a fence open (a cut cannot be blamed for it);
  * answer kept (an extra, for domains without gold): the cut keeps the full answer's opening,
    its first two sentences or lines (code: its first complete code block);
  * the static-budget baseline: the one global ``max_tokens`` whose total tokens over the whole
    set come closest to a target, with its EM and agreement per domain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.policy.quality import normalise, opening
from gateway.policy.text import Step, TextTracker

GOLD_DOMAINS = ("math", "factual")
CODE_DOMAIN = "code"

_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")


def last_number(text: str) -> float | None:
    """The last number written in ``text`` (thousands commas allowed), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", "").rstrip("."))
    except ValueError:
        return None


def exact_match(domain: str, text: str, gold: Sequence[str] | None) -> bool | None:
    """EM against gold; None for a domain (or row) without gold answers."""
    if domain not in GOLD_DOMAINS or not gold:
        return None
    if domain == "math":
        value = last_number(text)
        return value is not None and any(_close(value, g) for g in gold)
    out = normalise(text)
    return any(bool(normalise(g)) and normalise(g) in out for g in gold)


def _close(value: float, gold: str) -> bool:
    try:
        return abs(value - float(gold.replace(",", ""))) < 1e-6
    except ValueError:
        return False


def fence_intact(text: str) -> bool:
    return text.count("```") % 2 == 0


CORE_SENTENCES = 2
CORE_MAX_CHARS = 200


def answer_core(domain: str, text: str) -> str:
    """The opening of a full answer that a cut must keep where there is no gold.

    Code: the text up to the end of its first complete code block. Otherwise: the first two
    sentences (as the policy engine counts them) or lines, whichever ends first, and at most
    200 characters (a degenerate loop has no sentence end, but its opening is still the answer).
    """
    if domain == CODE_DOMAIN:
        tracker, step = TextTracker(), Step()
        for k, c in enumerate(text):
            tracker.advance(step, c)
            if tracker.blocks:
                return text[: k + 1]
        return text
    return opening(text, CORE_SENTENCES, CORE_MAX_CHARS)


def answer_kept(domain: str, full: str, cut: str) -> bool:
    """Whether the cut output still holds the full answer's core (see ``answer_core``)."""
    return cut.startswith(answer_core(domain, full).rstrip())


@dataclass(frozen=True)
class Item:
    """One query's two outputs, as the metrics need them."""

    domain: str
    gold: Sequence[str] | None
    text_full: str
    tokens_full: int
    text_cut: str
    tokens_cut: int


def domain_figures(items: Sequence[Item]) -> dict[str, Any]:
    """tokens, saved_pct, em_full, em_policy, agreement, code_fence_intact for one domain's items."""
    if not items:
        raise ValueError("no items")
    domain = items[0].domain
    full = sum(i.tokens_full for i in items)
    cut = sum(i.tokens_cut for i in items)
    em_full = em_cut = agreement = None
    if domain in GOLD_DOMAINS:
        f = [bool(exact_match(domain, i.text_full, i.gold)) for i in items]
        c = [bool(exact_match(domain, i.text_cut, i.gold)) for i in items]
        em_full, em_cut = sum(f) / len(items), sum(c) / len(items)
        agreement = answer_agreement(domain, items, f, c)
    intact = None
    if domain == CODE_DOMAIN:
        intact = sum(fence_intact(i.text_cut) or not fence_intact(i.text_full) for i in items) / len(items)
    return {
        "items": len(items),
        "tokens_full": full,
        "tokens_policy": cut,
        "saved_pct": saved_pct(full, cut),
        "em_full": em_full,
        "em_policy": em_cut,
        "agreement": agreement,
        "code_fence_intact": intact,
        # not in the contract: a gold-free proxy, the share of cuts that keep the answer's core
        "answer_kept": sum(answer_kept(domain, i.text_full, i.text_cut) for i in items) / len(items),
    }


def answer_agreement(domain: str, items: Sequence[Item], em_full: Sequence[bool], em_cut: Sequence[bool]) -> float:
    """math: share with the same final number; factual: share of full-correct items still correct.

    With no item correct under full inference nothing could be lost: 1.0.
    """
    if domain == "math":
        return sum(last_number(i.text_full) == last_number(i.text_cut) for i in items) / len(items)
    kept = [c for f, c in zip(em_full, em_cut, strict=True) if f]
    return 1.0 - sum(not c for c in kept) / max(1, len(kept))


def saved_pct(full: int, cut: int) -> float:
    """Percent of full-inference tokens saved (0 when full inference produced none)."""
    return 100.0 * (1.0 - cut / full) if full else 0.0


def closest_budget(full_lengths: Sequence[int], target: int, cap: int) -> int:
    """The one global max_tokens (1..cap) whose total min(length, budget) is closest to ``target``.

    Ties go to the larger budget (less truncation for the same total).
    """
    lengths = sorted(full_lengths)
    best, best_gap = cap, None
    total, i, n = 0, 0, len(lengths)
    for budget in range(1, cap + 1):
        while i < n and lengths[i] < budget:
            total += lengths[i]
            i += 1
        used = total + budget * (n - i)
        gap = abs(used - target)
        if best_gap is None or gap <= best_gap:
            best, best_gap = budget, gap
    return best
