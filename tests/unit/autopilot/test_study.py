"""The offline study: autopilot played over recorded generations in arrival order."""

from __future__ import annotations

import asyncio

from gateway.autopilot.study import loosened, study_domain, with_autopilot
from gateway.offline.generations import Generation
from gateway.policy.loader import parse_policy
from gateway.policy.rules import Sentences

ANSWER = " ".join(f"Sentence number {i} says something {i}." for i in range(1, 7))


def generation() -> Generation:
    words = ANSWER.split(" ")
    texts = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    return Generation([1], 512, "stop", list(range(len(texts))), texts, [-0.1] * len(texts), [0.1] * len(texts))


def test_autopilot_tightens_a_loose_start_and_the_later_requests_get_cheaper() -> None:
    """From sentences 8, the 16th sample brings sentences 2; later requests use fewer tokens, all agreeing."""
    doc = {"domain": "small_talk", "max_tokens": 128, "rules": [{"sentences": {"max": 3}}]}
    shipped = parse_policy(doc, source="t", domains=["small_talk"], expect_domain="small_talk")
    start = with_autopilot(loosened(shipped), 0.8, 12)
    rule = start.rules[0]
    assert isinstance(rule, Sentences) and rule.max == 8
    result = asyncio.run(study_domain("small_talk", [generation()] * 40, start, shipped))
    assert [c["after_request"] for c in result.changes] == [16]
    figures = result.as_dict()
    assert figures["autopilot"]["agreement"] == 1.0 and figures["start"]["saved_pct"] == 0.0
    # 16 requests at all 36 tokens, then 24 at two sentences (12): 40% saved; the shipped three sentences: 50%
    assert figures["autopilot"]["saved_pct"] == 40.0 and figures["shipped"]["saved_pct"] == 50.0
    assert figures["final_policy"]["rules"] == [{"sentences": {"max": 2}}]
