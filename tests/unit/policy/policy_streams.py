"""Token streams for engine tests: text split the way a BPE tokenizer roughly would."""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.policy.engine import Outcome, PolicyEngine, ProbeSource, replay
from gateway.policy.rules import RuleSpec
from gateway.worker.protocol import TokenEvent

_PIECE = re.compile(r"\n+|```|[ ]?[A-Za-z']+|[ ]?\d|[ ]?[^\sA-Za-z\d`]|`| +")


def pieces(text: str) -> list[str]:
    """``text`` cut into token-like pieces (words with their leading space, single digits, ...)."""
    out = _PIECE.findall(text)
    assert "".join(out) == text
    return out


def events(parts: Sequence[str], logprobs: Sequence[float] | None = None) -> list[TokenEvent]:
    """One event per piece; equal pieces get equal token ids."""
    ids: dict[str, int] = {}
    return [
        TokenEvent(
            i,
            ids.setdefault(p, len(ids) + 1),
            p,
            logprobs[i] if logprobs else -0.1,
            -(logprobs[i] if logprobs else -0.1),
        )
        for i, p in enumerate(parts)
    ]


def run(
    rules: Sequence[RuleSpec],
    text: str | Sequence[str],
    *,
    max_tokens: int = 10_000,
    min_tokens: int = 0,
    shadow: bool = False,
    probes: ProbeSource | None = None,
    logprobs: Sequence[float] | None = None,
    queue_depths: Sequence[int] | None = None,
) -> tuple[str, Outcome]:
    """Replay ``text`` through a fresh engine; returns the output it keeps and the outcome."""
    parts = pieces(text) if isinstance(text, str) else list(text)
    engine = PolicyEngine(rules, max_tokens=max_tokens, min_tokens=min_tokens, shadow=shadow)
    trace = replay(engine, events(parts, logprobs), probes, queue_depths)
    return "".join(parts[: trace.outcome.tokens]), trace.outcome
