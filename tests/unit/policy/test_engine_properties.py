"""Property tests of the engine's invariants over random streams, rules, budgets and probes."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.engine import PolicyEngine, StopDecision, replay
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
from gateway.worker.protocol import ProbeResult, TokenEvent

PIECES = [
    "The",
    " cat",
    " sat",
    ".",
    " ",
    "\n",
    "\n\n",
    "```",
    "`",
    "``",
    "python",
    " 4",
    "2",
    "####",
    " ####",
    ":",
    " no",
    ",",
    "!",
    " x",
    " =",
    "1",
    " e.g",
    " Dr",
    "",
    "?\n",
]
# Runs of pieces that look like text: sentences, paragraphs, fences, answers, loops, and noise.
CHUNKS = [
    ["The", " cat", " sat", "."],
    [" ", "The", " cat", " sat", "!"],
    ["\n\n"],
    ["\n"],
    ["```", "python", "\n"],
    ["```"],
    [" x", " =", "1", "\n"],
    ["####", " 4", "2", "\n"],
    [" no", ","],
    [" e.g", "."],
    ["?\n"],
    ["``", "`"],
    [" Dr", ".", " cat"],
    ["", " 4", "", "2"],
]
PIECE_LISTS = st.one_of(
    st.lists(st.sampled_from(CHUNKS), min_size=12, max_size=50).map(lambda cs: [p for c in cs for p in c]),
    st.lists(st.sampled_from(PIECES), min_size=20, max_size=150),
    st.tuples(
        st.lists(st.sampled_from(PIECES), max_size=30),
        st.lists(st.sampled_from(PIECES), min_size=1, max_size=12),
    ).map(lambda head_body: head_body[0] + head_body[1] * (150 // len(head_body[1]))),  # a degenerate loop
)
BOUNDARY = st.sampled_from(["token", "sentence", "line", "paragraph"])

RULE = st.one_of(
    st.builds(
        AnswerPattern,
        pattern=st.sampled_from([r"####\s*\d+", r"cat sat", r"x = \d"]),
        at=st.sampled_from(["match", "sentence", "line", "paragraph"]),
        window=st.integers(16, 64),
    ),
    st.builds(Sentences, max=st.integers(1, 4)),
    st.builds(Paragraphs, max=st.integers(1, 3)),
    st.builds(CodeBlocks, max=st.integers(1, 2)),
    st.builds(
        Repetition,
        ngram=st.integers(1, 4),
        max_repeats=st.integers(1, 3),
        window=st.sampled_from([0, 64]),
        at=BOUNDARY,
    ),
    st.builds(
        Loop,
        ngram=st.integers(1, 4),
        max_period=st.integers(1, 16),
        min_repeats=st.integers(2, 4),
        min_span=st.integers(1, 12),
        align=st.sampled_from(["none", "budget"]),
    ),
    st.builds(Confidence, window=st.integers(1, 8), min_mean_logprob=st.floats(-5, -0.5), at=BOUNDARY),
    st.builds(
        Probe,
        every=st.integers(1, 8),
        agree=st.integers(1, 3),
        min_confidence=st.floats(0, 1),
        answer=st.sampled_from(["number", "text"]),
        append=st.booleans(),
    ),
    st.builds(LoadBudget, queue_depth=st.integers(0, 3), max_tokens=st.integers(1, 40)),
)

CASE = st.fixed_dictionaries(
    {
        "stream": PIECE_LISTS.flatmap(
            lambda ps: st.lists(st.floats(-6, 0), min_size=len(ps), max_size=len(ps)).map(
                lambda lps: list(zip(ps, lps, strict=True))[:150]
            )
        ),
        "rules": st.lists(RULE, min_size=1, max_size=4),
        "max_tokens": st.integers(1, 160) | st.just(160),
        "min_tokens": st.integers(0, 40),
        "probes": st.lists(
            st.none()
            | st.builds(
                ProbeResult,
                text=st.sampled_from([" 42", " 42.0", " 7", "Paris", ""]),
                tokens=st.just(2),
                confidence=st.floats(0.5, 1),
            ),
            min_size=161,
            max_size=161,
        ).map(lambda rs: {i: r for i, r in enumerate(rs) if r is not None}),
        "queue": st.lists(st.integers(0, 5), min_size=160, max_size=160),
    }
)


def to_events(stream: list[tuple[str, float]]) -> list[TokenEvent]:
    return [TokenEvent(i, PIECES.index(p), p, lp, -lp) for i, (p, lp) in enumerate(stream)]


def engine(case: dict[str, Any], *, shadow: bool = False) -> PolicyEngine:
    return PolicyEngine(case["rules"], max_tokens=case["max_tokens"], min_tokens=case["min_tokens"], shadow=shadow)


def live(case: dict[str, Any]) -> tuple[list[StopDecision], str, PolicyEngine]:
    """Feed like the request pipeline does: hold each token until the engine has decided."""
    eng = engine(case)
    decisions, sent = [], ""
    for i, event in enumerate(to_events(case["stream"])):
        decision = eng.feed(event, queue_depth=case["queue"][i])
        decisions.append(decision)
        if decision.stop:
            sent += (event.text if decision.include_token else "") + decision.append_text
            break
        sent += event.text
        if eng.pending_probe() is not None and eng.tokens in case["probes"]:
            decision = eng.feed_probe(case["probes"][eng.tokens])
            decisions.append(decision)
            if decision.stop:
                sent += decision.append_text
                break
    return decisions, sent, eng


EXAMPLES = settings(max_examples=150, deadline=None)


@EXAMPLES
@given(CASE)
def test_budget_and_min_tokens_hold(case: dict[str, Any]) -> None:
    """Never more than max_tokens; nothing but the hard budget stops before min_tokens."""
    _, _, eng = live(case)
    out = eng.outcome
    assert out.tokens <= case["max_tokens"]
    if out.finish_reason is None:
        assert out.tokens == len(case["stream"])
    elif out.stop_rule is None:
        assert (out.finish_reason, out.tokens) == ("length", case["max_tokens"])
    else:
        assert out.tokens >= case["min_tokens"]
        assert out.finish_reason == ("length" if out.stop_rule == "load_budget" else "stop")


@EXAMPLES
@given(CASE)
def test_rules_never_cut_inside_an_open_code_fence(case: dict[str, Any]) -> None:
    """When a rule stops, the output holds an even number of ``` fences."""
    _, sent, eng = live(case)
    out = eng.outcome
    if out.finish_reason == "stop":
        assert (sent[: len(sent) - len(out.append_text)]).count("```") % 2 == 0


@EXAMPLES
@given(CASE)
def test_what_is_sent_is_the_counted_prefix(case: dict[str, Any]) -> None:
    """The text sent is exactly the first `tokens` pieces (plus any appended answer)."""
    _, sent, eng = live(case)
    pieces = [p for p, _ in case["stream"]]
    assert sent == "".join(pieces[: eng.tokens]) + eng.outcome.append_text


@EXAMPLES
@given(CASE)
def test_decisions_are_deterministic_and_replay_equals_live(case: dict[str, Any]) -> None:
    """Two live runs agree, and replay() of the same recording gives the same decisions."""
    first, _, eng = live(case)
    second, _, _ = live(case)
    assert first == second
    trace = replay(engine(case), to_events(case["stream"]), case["probes"], case["queue"])
    assert trace.decisions == first and trace.outcome == eng.outcome


@EXAMPLES
@given(CASE)
def test_shadow_reports_exactly_what_enforcement_would_do(case: dict[str, Any]) -> None:
    """A shadow policy only stops at the budget and records the enforced policy's stop."""
    enforced = replay(engine(case), to_events(case["stream"]), case["probes"], case["queue"]).outcome
    shadow = replay(engine(case, shadow=True), to_events(case["stream"]), case["probes"], case["queue"]).outcome
    assert shadow.stop_rule is None and shadow.append_text == ""
    assert shadow.tokens == min(len(case["stream"]), case["max_tokens"])
    if enforced.stop_rule is None:
        assert shadow.shadow is None
    else:
        assert shadow.shadow is not None
        assert (shadow.shadow.rule, shadow.shadow.tokens, shadow.shadow.finish_reason) == (
            enforced.stop_rule,
            enforced.tokens,
            enforced.finish_reason,
        )
