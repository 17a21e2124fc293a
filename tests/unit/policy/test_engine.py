"""The policy engine: one test per rule family, plus budget, guards, shadow mode and replay."""

from __future__ import annotations

import re

import pytest
from policy_streams import events, pieces, run

from gateway.errors import RequestError
from gateway.policy.engine import PolicyEngine, ProbeRequest, StopDecision, replay
from gateway.policy.rules import (
    AnswerPattern,
    CodeBlocks,
    Confidence,
    LoadBudget,
    Loop,
    Paragraphs,
    Probe,
    Repetition,
    Sentences,
)
from gateway.policy.schema import Policy
from gateway.worker.protocol import ProbeResult

PROSE = "Paris is the capital of France. It lies on the Seine. It is large. People like it a lot."


def last_number(text: str) -> str | None:
    found = re.findall(r"-?\d[\d,]*\.?\d*", text)
    return found[-1].rstrip(".") if found else None


# --- budgets -------------------------------------------------------------------------------


def test_hard_budget_ends_with_length_and_no_rule() -> None:
    """The budget stops at exactly max_tokens with finish_reason length and no stop rule."""
    text, out = run([], PROSE, max_tokens=5)
    assert out.tokens == 5 and text == "Paris is the capital of"
    assert (out.stop_rule, out.finish_reason) == (None, "length")


def test_budget_below_one_is_refused() -> None:
    """A budget of zero tokens is a request error, not an engine that never stops."""
    with pytest.raises(RequestError):
        PolicyEngine([], max_tokens=0)


def test_load_budget_tightens_only_while_the_queue_is_deep() -> None:
    """load_budget cuts at its max_tokens (length) while queue depth > N, and not otherwise."""
    rule = LoadBudget(queue_depth=4, max_tokens=6)
    n = len(pieces(PROSE))
    _, calm = run([rule], PROSE, queue_depths=[4] * n)
    assert calm.stop_rule is None and calm.tokens == n
    _, busy = run([rule], PROSE, queue_depths=[5] * n)
    assert (busy.stop_rule, busy.finish_reason, busy.tokens) == ("load_budget", "length", 6)
    _, floor = run([rule], PROSE, queue_depths=[9] * n, min_tokens=9)
    assert floor.tokens == 9  # never below the policy's min_tokens


def test_policy_off_keeps_only_the_budget() -> None:
    """enforce_rules=False ignores every rule, load budgets included; max_tokens still holds."""
    engine = PolicyEngine(
        [Sentences(max=1), LoadBudget(queue_depth=0, max_tokens=2)], max_tokens=8, enforce_rules=False
    )
    decisions = [engine.feed(e, queue_depth=10) for e in events(pieces(PROSE))[:8]]
    assert [d.stop for d in decisions] == [False] * 7 + [True]
    assert decisions[-1] == StopDecision(True, None, "length")


# --- rule families -------------------------------------------------------------------------


def test_answer_pattern_stops_once_the_match_is_complete() -> None:
    """'#### 42' stops at the end of the match, the next token is not sent."""
    text, out = run([AnswerPattern(pattern=r"####\s*-?[\d,]*\.?\d+")], "So 6 * 7 = 42.\n#### 42\nThe answer is 42.")
    assert text == "So 6 * 7 = 42.\n#### 42"
    assert (out.stop_rule, out.finish_reason) == ("answer_pattern", "stop")


def test_answer_pattern_waits_for_the_whole_number() -> None:
    """A decimal arriving token by token is not cut after its integer part."""
    text, _ = run([AnswerPattern(pattern=r"####\s*-?[\d,]*\.?\d+")], "#### 42.5 and more words here")
    assert text.startswith("#### 42.5")


def test_answer_pattern_at_sentence_keeps_the_sentence() -> None:
    """at: sentence moves the cut to the end of the sentence holding the match."""
    rule = AnswerPattern(pattern=r"(?i)the answer is \d+", at="sentence")
    text, _ = run([rule], "Let me see. The answer is 42 apples in total. Then we check it again.")
    assert text == "Let me see. The answer is 42 apples in total."


def test_sentences_limit_skips_abbreviations_decimals_and_list_numbers() -> None:
    """Dots in 'e.g.', '3.5', initials and '1.' list markers do not end sentences."""
    body = "Use e.g. flour, about 3.5 cups, as J. Smith says.\n1. Mix it well. Bake it. Eat it."
    text, out = run([Sentences(max=2)], body)
    assert text == "Use e.g. flour, about 3.5 cups, as J. Smith says.\n1. Mix it well."
    assert out.stop_rule == "sentences"


def test_paragraphs_limit_lets_a_list_intro_run_on() -> None:
    """A paragraph ending in ':' introduces its list, so it does not count on its own."""
    body = "The winners are:\n\n1. Alice\n2. Bob\n\nBoth won twice.\n\nMore text follows."
    text, _ = run([Paragraphs(max=1)], body)
    assert text == "The winners are:\n\n1. Alice\n2. Bob"


def test_code_blocks_stop_right_after_the_block_closes() -> None:
    """code_blocks: {max: 1} keeps the first complete block and nothing after it."""
    body = "Here:\n```python\ndef f(x):\n    return x * 2\n```\n\nThis doubles x. It is simple."
    text, out = run([CodeBlocks(max=1)], body)
    assert text == "Here:\n```python\ndef f(x):\n    return x * 2\n```"
    assert out.stop_rule == "code_blocks"


def test_repetition_stops_a_phrase_loop() -> None:
    """An n-gram seen more than max_repeats times stops the reply (at sentence end if asked)."""
    body = "I am glad to help. " + "I am happy to help with anything. " * 6
    text, out = run([Repetition(ngram=4, max_repeats=1, at="sentence")], body)
    assert out.stop_rule == "repetition"
    assert text == "I am glad to help. I am happy to help with anything. I am happy to help with anything."


def test_repetition_window_forgets_old_occurrences() -> None:
    """With a window, a phrase recurring far apart is not a loop."""
    filler = " ".join(f"w{i}" for i in range(40))
    body = f"Say the same four words {filler} the same four words"
    _, windowed = run([Repetition(ngram=4, max_repeats=1, window=20)], pieces(body))
    assert windowed.stop_rule is None
    _, unbounded = run([Repetition(ngram=4, max_repeats=1)], pieces(body))
    assert unbounded.stop_rule == "repetition"


def test_loop_detects_exact_periodicity() -> None:
    """A greedy loop (the same tokens over and over) is caught after min_repeats periods."""
    body = "Hello there. " + "No, no, no, " * 30
    text, out = run([Loop(min_repeats=3, min_span=6)], body)
    assert out.stop_rule == "loop"
    assert out.tokens <= 24 and text.startswith("Hello there. No,")


def test_loop_aligned_to_the_budget_keeps_the_final_number() -> None:
    """align: budget stops in the loop's phase at the budget, so the last number is unchanged."""
    parts = pieces("She has 12 socks.\n" + "Then 3 + 4 = 7 pairs, so 7 left.\n" * 40)
    budget = 203
    full = "".join(parts[:budget])
    text, out = run([Loop(min_repeats=3, min_span=24, align="budget")], parts, max_tokens=budget)
    assert out.stop_rule == "loop" and out.tokens < budget / 2
    period = len(pieces("Then 3 + 4 = 7 pairs, so 7 left.\n"))
    assert (budget - out.tokens) % period == 0
    assert full.startswith(text) and text.splitlines()[-1] == full.splitlines()[-1]
    assert last_number(text) == last_number(full)


def test_confidence_window_stops_an_unsure_ramble_at_a_sentence_end() -> None:
    """A window of low logprobs arms the rule; the cut waits for the sentence to end."""
    parts = pieces(PROSE)
    sure = [-0.05] * len(parts)
    unsure = [-0.05] * 8 + [-4.0] * (len(parts) - 8)
    rule = Confidence(window=4, min_mean_logprob=-2.0, at="sentence")
    assert run([rule], parts, logprobs=sure)[1].stop_rule is None
    text, out = run([rule], parts, logprobs=unsure)
    assert out.stop_rule == "confidence" and text == "Paris is the capital of France. It lies on the Seine."


def test_probes_stop_once_answers_agree_and_append_the_answer() -> None:
    """Every N tokens a probe is due; agree consecutive confident answers stop and append."""
    rule = Probe(
        every=4,
        suffix="\nFinal answer:",
        max_tokens=8,
        agree=2,
        min_confidence=0.5,
        answer="number",
        append=True,
    )
    answers = {
        4: ProbeResult(" 12", 2, 0.9),
        8: ProbeResult(" $12.00", 3, 0.9),
        12: ProbeResult(" 12", 2, 0.9),
    }
    text, out = run([rule], PROSE, probes=answers)
    assert (out.stop_rule, out.tokens, out.probes) == ("probe", 8, 2)
    assert out.append_text == "\nFinal answer: $12.00"
    assert text == "Paris is the capital of France. It"


def test_probe_streak_breaks_on_low_confidence_or_a_skipped_probe() -> None:
    """An unsure probe or one the caller never answered restarts the agreement count."""
    rule = Probe(every=2, agree=2, min_confidence=0.8, answer="text")
    unsure = {
        2: ProbeResult(" Paris", 1, 0.9),
        4: ProbeResult(" Paris", 1, 0.3),
        6: ProbeResult(" Paris", 1, 0.9),
        8: ProbeResult("Paris", 1, 0.9),
    }
    assert run([rule], PROSE, probes=unsure)[1].tokens == 8
    skipped = {
        2: ProbeResult(" Paris", 1, 0.9),
        6: ProbeResult(" Paris.", 1, 0.9),
        8: ProbeResult("paris", 1, 0.9),
    }
    assert run([rule], PROSE, probes=skipped)[1].tokens == 8


def test_pending_probe_is_offered_after_feed() -> None:
    """pending_probe() names the suffix and size of the probe due after this token."""
    engine = PolicyEngine([Probe(every=2, suffix="\nAnswer:", max_tokens=5)], max_tokens=100)
    evs = events(pieces(PROSE))
    engine.feed(evs[0])
    assert engine.pending_probe() is None
    engine.feed(evs[1])
    assert engine.pending_probe() == ProbeRequest("\nAnswer:", 5)


# --- guards, shadow, replay ----------------------------------------------------------------


def test_no_rule_stops_before_min_tokens() -> None:
    """A sentence limit reached too early waits for the next sentence end past min_tokens."""
    text, out = run([Sentences(max=1)], PROSE, min_tokens=8)
    assert text == "Paris is the capital of France. It lies on the Seine."
    assert out.tokens >= 8


def test_no_rule_stops_inside_an_open_code_fence() -> None:
    """A loop detected inside a code block stops only once the fence has closed."""
    code = "```python\n" + "x = x + 1\n" * 12 + "```\nDone. More words follow here."
    text, out = run([Repetition(ngram=3, max_repeats=1)], code)
    assert out.stop_rule == "repetition"
    assert text.endswith("```") and text.count("```") == 2


def test_sentences_inside_code_do_not_count() -> None:
    """Dots inside a fenced block are code, not sentence ends."""
    body = "Run this.\n```\nprint('a. b. c. d.')\n```\nIt prints. Then it exits."
    text, _ = run([Sentences(max=2)], body)
    assert text.endswith("It prints.")


def test_shadow_mode_reports_but_only_the_budget_stops() -> None:
    """Shadow evaluates the rules and records the would-be stop; output runs to the budget."""
    _, enforced = run([Sentences(max=2)], PROSE)
    _, shadow = run([Sentences(max=2)], PROSE, shadow=True, max_tokens=20)
    assert shadow.stop_rule is None and shadow.finish_reason == "length" and shadow.tokens == 20
    assert shadow.shadow is not None
    assert (shadow.shadow.rule, shadow.shadow.tokens) == ("sentences", enforced.tokens)


def test_feed_after_a_stop_changes_nothing() -> None:
    """Feeding past a stop returns the same stop and keeps the token count."""
    engine = PolicyEngine([], max_tokens=2)
    evs = events(pieces(PROSE))
    engine.feed(evs[0])
    stop = engine.feed(evs[1])
    assert engine.feed(evs[2]) == stop and engine.tokens == 2


def test_replay_matches_live_feeding() -> None:
    """replay() gives the same decisions as a caller feeding tokens and answering probes."""
    rules = [Sentences(max=3), Probe(every=3, agree=2, answer="text")]
    answers = {
        3: ProbeResult("Paris", 1, 0.9),
        6: ProbeResult("Lyon", 1, 0.9),
        9: ProbeResult("Lyon", 1, 0.9),
    }
    live = PolicyEngine(rules, max_tokens=50)
    decisions = []
    for ev in events(pieces(PROSE)):
        decisions.append(live.feed(ev))
        if decisions[-1].stop:
            break
        if live.pending_probe() is not None and live.tokens in answers:
            decisions.append(live.feed_probe(answers[live.tokens]))
            if decisions[-1].stop:
                break
    trace = replay(PolicyEngine(rules, max_tokens=50), events(pieces(PROSE)), answers)
    assert trace.decisions == decisions and trace.outcome == live.outcome
    assert trace.outcome.stop_rule == "probe"


def test_for_policy_takes_the_smaller_budget_and_the_shadow_flag() -> None:
    """for_policy caps the client's max_tokens by the policy's and honours shadow and min_tokens."""
    policy = Policy(domain="factual", max_tokens=10, min_tokens=3, rules=(Sentences(max=1),), shadow=True)
    out = replay(PolicyEngine.for_policy(policy, max_tokens=50), events(pieces(PROSE))).outcome
    assert (out.tokens, out.finish_reason, out.stop_rule) == (10, "length", None)
    assert out.shadow is not None and out.shadow.rule == "sentences"
    tight = replay(PolicyEngine.for_policy(policy, max_tokens=4), events(pieces(PROSE))).outcome
    assert tight.tokens == 4
