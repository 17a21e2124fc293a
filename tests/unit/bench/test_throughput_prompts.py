"""The throughput bench's TTFT samples are different questions from their first character, of one length."""

from __future__ import annotations

from gateway.bench.throughput import PROMPT, TTFT_SAMPLES, ttft_prompt


def test_ttft_samples_differ_from_the_first_character_and_keep_the_prompts_length() -> None:
    """No two samples share a leading character, so a prefix cache can reuse only the template's head."""
    prompts = [ttft_prompt(k) for k in range(TTFT_SAMPLES)]
    assert len({p[0] for p in prompts}) == TTFT_SAMPLES
    assert {len(p) for p in prompts} == {len(PROMPT) + 3}
