"""Property tests of the thinking engine: deterministic, never past its budget, stop is final."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.rules import AnswerConvergence, Loop, Probe, Repetition, RuleSpec
from gateway.policy.thinking import ThinkingEngine, ThinkingSpec
from gateway.worker.protocol import ProbeResult, TokenEvent

PIECES = [" So", " the", " answer", " is", " 12", ".", " Wait", ",", "\n", "\n\n", " x", " =", " 5", " \\boxed{",
          "7", "}", " let", " me", " check", "?", " p(8)", " likely", ""]  # fmt: skip

rules = st.lists(
    st.sampled_from(
        [
            AnswerConvergence(),
            AnswerConvergence(agree=4, conclusion=1, settle=3),
            Loop(max_period=8, min_repeats=3, min_span=6),
            Repetition(ngram=2, max_repeats=2),
            Probe(every=3, agree=2, answer="boxed", min_confidence=0.5),
        ]
    ),
    max_size=3,
)
streams = st.lists(st.sampled_from(PIECES), max_size=120)


def run(rule_list: list[RuleSpec], pieces: list[str], budget: int | None) -> list[tuple[bool, str | None]]:
    engine = ThinkingEngine(ThinkingSpec(rules=tuple(rule_list)), budget=budget, question="Find $p(8)$.")
    out: list[tuple[bool, str | None]] = []
    for i, text in enumerate(pieces):
        d = engine.feed(TokenEvent(i, hash(text) % 97, text, -0.1, phase="thinking"))
        out.append((d.stop, d.rule))
        if not d.stop and engine.pending_probe() is not None:
            d = engine.feed_probe(ProbeResult(f"{i % 2}}}", 2, 0.9))
            out.append((d.stop, d.rule))
    assert budget is None or engine.tokens <= budget
    out.append((engine.stopped, engine.answer))
    return out


@settings(max_examples=200, deadline=None)
@given(rules, streams, st.one_of(st.none(), st.integers(1, 100)))
def test_deterministic_and_within_budget(rule_list: list[RuleSpec], pieces: list[str], budget: int | None) -> None:
    """The same tokens give the same decisions and answer; thinking tokens never exceed the budget."""
    assert run(rule_list, pieces, budget) == run(rule_list, pieces, budget)


@settings(max_examples=200, deadline=None)
@given(rules, streams, st.integers(1, 60))
def test_a_stop_is_final_and_the_budget_always_ends_it(
    rule_list: list[RuleSpec], pieces: list[str], budget: int
) -> None:
    """After the first stop every decision repeats it; a stream reaching the budget stops exactly there."""
    decisions = run(rule_list, pieces, budget)[:-1]
    stops = [i for i, (stop, _) in enumerate(decisions) if stop]
    if stops:
        assert all(d == decisions[stops[0]] for d in decisions[stops[0] :])
    if len(pieces) >= budget:
        assert stops, "the budget did not end the thinking"
