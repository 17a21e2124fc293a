"""The shipped policies do what their descriptions promise on typical small-model answers."""

from __future__ import annotations

import re
from pathlib import Path

from policy_streams import pieces, run

from gateway.policy.loader import parse_policy
from gateway.policy.schema import Policy

POLICIES = Path(__file__).resolve().parents[3] / "policies"


def policy(domain: str) -> Policy:
    path = POLICIES / f"{domain}.yaml"
    return parse_policy(path.read_bytes(), source=str(path), domains=(domain,), expect_domain=domain)


def apply(domain: str, text: str, budget: int = 512) -> tuple[str, str | None, int]:
    shipped = policy(domain)
    parts = pieces(text)
    kept, out = run(shipped.rules, parts, max_tokens=min(budget, shipped.max_tokens), min_tokens=shipped.min_tokens)
    return kept, out.stop_rule, len(parts) - out.tokens


def test_factual_keeps_the_answer_and_drops_the_elaboration() -> None:
    """A factual answer keeps its first sentences and stops before the rambling goes on."""
    answer = (
        "The first telephone was patented by Alexander Graham Bell in 1876. It changed how people talked. "
        "Many inventors worked on similar devices at the time, and some of them claimed to be first. "
        "Today telephones are everywhere, and they keep getting smaller and smarter every year. "
        "Some people collect old telephones, and museums show how their shapes changed over the decades. "
        "Phone booths were once found on many street corners, but most of them have now disappeared."
    )
    kept, rule, saved = apply("factual", answer)
    assert rule == "sentences" and saved > 20
    assert kept == (
        "The first telephone was patented by Alexander Graham Bell in 1876. It changed how people talked. "
        "Many inventors worked on similar devices at the time, and some of them claimed to be first."
    )


def test_small_talk_stops_a_reply_that_repeats_itself() -> None:
    """A greeting that loops is cut short, at a sentence end."""
    reply = "You're welcome! " + "I'm happy to help with anything. " * 20
    kept, rule, saved = apply("small_talk", reply)
    assert rule is not None and saved > 100
    assert kept.endswith(".") and kept.count("happy to help") <= 2


def test_code_keeps_the_whole_block() -> None:
    """The code policy stops right after the first complete code block, never inside it."""
    answer = (
        "```python\ndef double(x):\n"
        "    total = x + x\n    total = x + x\n    total = x + x\n    return total\n```\n\n"
        "This function doubles its input. It works for ints and floats. It is simple and fast."
    )
    kept, rule, _ = apply("code", answer)
    assert rule == "code_blocks" and kept.endswith("return total\n```") and kept.count("```") == 2


def test_code_loop_inside_a_block_is_never_cut() -> None:
    """A block that loops until the budget is left whole rather than cut mid-code by a rule."""
    answer = "```python\n" + "print('hello world')\n" * 200
    _, rule, _ = apply("code", answer)
    assert rule is None


def test_math_keeps_the_final_number_of_a_loop() -> None:
    """A looping math answer is stopped in phase with the budget: the last number is unchanged."""
    text = "Lisa has 12 pairs.\nSandra brings 20 pairs.\n" + "So Lisa has 12 + 20 = 32 pairs, and 4 more.\n" * 60
    parts = pieces(text)
    budget = 512
    full = "".join(parts[:budget])
    kept, rule, saved = apply("math", text, budget)
    assert rule == "loop" and saved > 200
    numbers = re.findall(r"\d+", kept)
    assert full.startswith(kept) and numbers[-1] == re.findall(r"\d+", full)[-1]


def test_math_stops_after_the_line_that_states_the_answer() -> None:
    """'#### N' or 'The answer is N' ends the answer: math stops at the end of that line."""
    text = "She has 3 + 4 = 7 apples.\n#### 7\nThe answer is: 7\nShe has 3 + 4 = 7 apples."
    kept, rule, saved = apply("math", text)
    assert rule == "answer_pattern" and kept.rstrip("\n").endswith("#### 7") and saved > 0


def test_math_waits_for_the_whole_answer_number() -> None:
    """A number still being written ('#### 1' before '20') is not cut: the last number is the full one."""
    text = "So 100 + 20 = 120.\n#### 120\nThe answer is: 120"
    kept, rule, _ = apply("math", text)
    assert rule == "answer_pattern" and re.findall(r"\d+", kept)[-1] == "120"


def test_math_does_not_cut_ordinary_working() -> None:
    """A math answer without a loop or a '####' line runs to its natural end."""
    text = "First, 3 * 4 = 12. Then 12 + 5 = 17. So she has 17 apples.\n\nThe answer is 17."
    _, rule, saved = apply("math", text)
    assert rule is None and saved == 0
