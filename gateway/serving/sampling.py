"""Online quality sampling: for a share of policy-stopped requests, generate on to full length.

The client never sees the continuation; the audit record gets ``full_completion_tokens`` and
``answer_agreed``, so ``stopgate audit summary`` can report measured savings and agreement per
domain in production. Which requests are sampled follows from the request id (reproducible).
"""

from __future__ import annotations

import hashlib
import re

_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")


def is_sampled(request_id: str, rate: float) -> bool:
    if rate <= 0:
        return False
    bucket = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64
    return bucket < rate


def final_answer(text: str) -> str:
    """The answer a reader would take away: the last number if there is one, else the first line."""
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1].replace(",", "").rstrip(".")
    first = text.strip().split("\n", 1)[0].lower()
    return " ".join(re.sub(r"[^\w\s]", " ", first).split())


def answers_agree(sent: str, full: str) -> bool:
    return final_answer(sent) == final_answer(full)
