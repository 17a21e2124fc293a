"""The thinking engine: budgets and effort, forced-end decisions, probes, the committed answer."""

from __future__ import annotations

import pytest
from policy_streams import events, pieces

from gateway.errors import DefinitionError
from gateway.policy.loader import parse_policy
from gateway.policy.rules import AnswerConvergence, Loop, Probe, Repetition
from gateway.policy.thinking import BUDGET_RULE, EffortBudgets, ThinkingEngine, ThinkingSpec
from gateway.worker.protocol import ProbeResult, TokenEvent

THOUGHT = "Let me add the numbers. 2 plus 3 is 5. So the answer is 5. Let me write it down.\n"


def feed_all(engine: ThinkingEngine, text: str) -> tuple[str, list[str]]:
    """Feed ``text`` piece by piece until the engine stops; returns the kept text and the pieces."""
    parts = pieces(text)
    kept: list[str] = []
    for event in events(parts):
        kept.append(event.text)
        if engine.feed(event).stop:
            break
    return "".join(kept), parts


def test_budget_ends_thinking_with_max_tokens() -> None:
    """The thinking budget stops after exactly budget tokens, rule max_tokens, token included."""
    engine = ThinkingEngine(ThinkingSpec(max_tokens=4), budget=4)
    parts = pieces(THOUGHT)
    decisions = [engine.feed(e) for e in events(parts[:6])]
    assert [d.stop for d in decisions] == [False, False, False, True, True, True]
    assert decisions[3].rule == BUDGET_RULE and decisions[3].include_token and decisions[3].finish_reason is None
    assert engine.tokens == 4 and engine.stop_rule == BUDGET_RULE


def test_for_request_takes_effort_and_leaves_room_for_the_answer() -> None:
    """Effort picks its budget; the request budget minus answer_reserve caps it; none and off give 0."""
    spec = ThinkingSpec(max_tokens=100, effort=EffortBudgets(low=10, high=400), answer_reserve=16)
    assert ThinkingEngine.for_request(spec, effort="low").budget == 10
    assert ThinkingEngine.for_request(spec, effort="medium").budget == 100
    assert ThinkingEngine.for_request(spec, effort="high", max_tokens=256).budget == 240
    assert ThinkingEngine.for_request(spec, max_tokens=10).budget == 0
    none = ThinkingEngine.for_request(spec, effort="none")
    assert none.budget == 0 and not none.allows_thinking
    assert ThinkingEngine.for_request(ThinkingSpec(mode="off", max_tokens=50)).budget == 0
    assert ThinkingEngine.for_request(ThinkingSpec()).budget is None


def test_loop_rule_ends_thinking() -> None:
    """An existing loop rule in the thinking section ends a looping thought, naming the rule."""
    spec = ThinkingSpec(rules=(Loop(max_period=16, min_repeats=3, min_span=12),))
    engine = ThinkingEngine(spec, budget=None)
    kept, parts = feed_all(engine, "Hmm. " + "Let me think again. " * 10)
    assert engine.stop_rule == "loop" and len(kept) < len("".join(parts))


def test_repetition_rule_ends_thinking() -> None:
    """A repetition rule counts thinking n-grams like answer n-grams."""
    engine = ThinkingEngine(ThinkingSpec(rules=(Repetition(ngram=4, max_repeats=1),)), budget=None)
    feed_all(engine, "I will check this again now. And I will check this again now. Done.")
    assert engine.stop_rule == "repetition"


def test_convergence_ends_thinking_and_commits_to_its_answer() -> None:
    """Two unhedged "the answer is 5" statements converge; the engine commits to 5."""
    rule = AnswerConvergence(agree=4, answer=2, settle=3)
    engine = ThinkingEngine(ThinkingSpec(rules=(rule,)), budget=None)
    text = "So the answer is 5. Checking: 2 plus 3 is 5. Yes, the answer is 5. Now I write it up for the user.\n"
    kept, _ = feed_all(engine, text)
    assert engine.stop_rule == "answer_convergence" and engine.answer == "5"
    assert kept.startswith("So the answer is 5. Checking: 2 plus 3 is 5. Yes, the answer is 5.")
    assert len(kept) < len(text)


def test_hesitation_withdraws_a_statement() -> None:
    """A "wait" right after a statement takes its points back: no convergence on a doubted answer."""
    rule = AnswerConvergence(agree=4, answer=2, settle=8)
    engine = ThinkingEngine(ThinkingSpec(rules=(rule,)), budget=None)
    feed_all(engine, "So the answer is 5. Wait, that is wrong. Maybe the answer is 5. But let me check again.\n")
    assert not engine.stopped and engine.answer == "5"


def test_answer_is_the_last_candidate_without_a_rule() -> None:
    """Without a convergence rule, ``answer`` is the last candidate stated before the cut (when tracked)."""
    engine = ThinkingEngine(ThinkingSpec(), budget=None, track_answer=True)
    feed_all(engine, "So the answer is 4. Hmm, no: the answer is 6. Done\n")
    assert engine.answer == "6"
    empty = ThinkingEngine(ThinkingSpec(), budget=None, track_answer=True)
    feed_all(empty, "Let me think about this.")
    assert empty.answer is None
    live = ThinkingEngine(ThinkingSpec(), budget=None)  # live requests skip the candidate scan
    feed_all(live, "So the answer is 4.\n")
    assert live.answer is None


def test_thinking_probe_asks_after_the_end_marker_and_stops_on_agreement() -> None:
    """A probe in the thinking section is asked after the end marker; two agreeing probes end thinking."""
    probe = Probe(every=2, suffix="\n\\boxed{", answer="boxed", agree=2, min_confidence=0.5)
    engine = ThinkingEngine(ThinkingSpec(rules=(probe,)), budget=None, end_marker="</think>")
    stream = events(pieces(THOUGHT))
    engine.feed(stream[0])
    assert engine.pending_probe() is None
    engine.feed(stream[1])
    request = engine.pending_probe()
    assert request is not None and request.suffix == "</think>\n\\boxed{"
    assert not engine.feed_probe(ProbeResult("5} done", 3, 0.9)).stop
    engine.feed(stream[2])
    engine.feed(stream[3])
    decision = engine.feed_probe(ProbeResult("5}", 2, 0.9))
    assert decision.stop and decision.rule == "probe" and engine.answer == "5" and engine.probes == 2


def test_enforce_rules_off_keeps_only_the_budget() -> None:
    """``enforce_rules=False`` (policy: off) disables thinking rules but keeps the thinking budget."""
    spec = ThinkingSpec(rules=(Repetition(ngram=1, max_repeats=1),))
    engine = ThinkingEngine(spec, budget=5, enforce_rules=False)
    feed_all(engine, "a a a a a a a a")
    assert engine.stop_rule == BUDGET_RULE and engine.tokens == 5


def test_shadow_records_the_rule_and_only_the_budget_stops() -> None:
    """In shadow mode a thinking rule is recorded, not enforced; the budget still ends the thinking."""
    spec = ThinkingSpec(rules=(Repetition(ngram=1, max_repeats=1),))
    engine = ThinkingEngine(spec, budget=6, shadow=True)
    feed_all(engine, "a a a a a a a a")
    assert engine.shadow_rule == "repetition" and engine.shadow_tokens == 3 and engine.stop_rule == BUDGET_RULE


def test_after_a_stop_feed_changes_nothing() -> None:
    """Feeding after the stop returns the same decision and counts no token."""
    engine = ThinkingEngine(ThinkingSpec(), budget=1)
    first = engine.feed(TokenEvent(0, 1, "a", -0.1, phase="thinking"))
    assert engine.feed(TokenEvent(1, 2, "b", -0.1, phase="thinking")) is first and engine.tokens == 1


def test_thinking_section_loads_rules_and_refuses_budget_rules() -> None:
    """The loader decodes thinking rules like top-level ones; a load_budget there is a located error."""
    doc = {
        "domain": "default",
        "max_tokens": 64,
        "thinking": {"mode": "model", "max_tokens": 900, "rules": [{"answer_convergence": {"target": 1}}]},
    }
    policy = parse_policy(doc, source="body", domains=("default",))
    assert policy.thinking is not None and policy.thinking.rules == (AnswerConvergence(target=1),)
    bad = {**doc, "thinking": {"rules": [{"load_budget": {"queue_depth": 1, "max_tokens": 8}}]}}
    with pytest.raises(DefinitionError, match=r"thinking\.rules"):
        parse_policy(bad, source="body", domains=("default",))
    with pytest.raises(DefinitionError, match="agree"):
        parse_policy(
            {**doc, "thinking": {"rules": [{"answer_convergence": {"agree": 0}}]}}, source="body", domains=("default",)
        )
