"""A sequence's bookkeeping: events in order through the phase splitter, and rewinds for a forced end of thinking."""

from __future__ import annotations

from types import SimpleNamespace

from gateway.worker.detokenize import IncrementalDetokenizer
from gateway.worker.protocol import SamplingParams, TokenEvent
from gateway.worker.sequence import Out, Sampled, Sequence

TEXTS = {1: "a", 2: "b", 3: "<", 4: "/think>", 5: "c", 6: "d", 90: "\n</think>\n"}


def make(max_tokens: int = 50, thinking: bool = True) -> Sequence:
    decode = SimpleNamespace(decode=lambda ids, **_: "".join(TEXTS.get(i, "?") for i in ids))
    return Sequence(
        [100, 101],
        SamplingParams(max_tokens=max_tokens),
        lambda _: None,
        IncrementalDetokenizer(decode),
        thinking=thinking,
    )


def events(out: Out) -> list[TokenEvent]:
    return [item for _, item, _ in out if isinstance(item, TokenEvent)]


def test_a_split_end_marker_is_held_then_labelled_thinking_with_indices_in_order() -> None:
    """Tokens '<' '/think>' wait for the marker to resolve; marker tokens are thinking with no text."""
    seq, out = make(), []
    for token in (1, 3, 4, 5):
        seq.record(Sampled(token, -0.5, 1.0), out)
    got = [(e.index, e.token_id, e.phase, e.text) for e in events(out)]
    assert got == [(0, 1, "thinking", "a"), (1, 3, "thinking", ""), (2, 4, "thinking", ""), (3, 5, "answer", "c")]


def test_rewind_keeps_the_read_events_and_appends_after_them() -> None:
    """rewind(2, ids): later tokens are taken back, the ids follow event 1, the KV drops what it held beyond."""
    seq, out = make(), []
    for token in (1, 2, 5, 6):
        seq.record(Sampled(token, -0.5, 1.0), out)
    seq.in_kv = 3  # the last sampled token is not in the KV cache yet
    drop = seq.rewind(2, [90])
    assert drop == 1 and seq.in_kv == 2
    assert seq.generated == [1, 2] and seq.tail == [1, 2, 90] and seq.epoch == 1
    assert seq.context(2) == [100, 101, 1, 2, 90]
    assert seq.feeding is False  # one id left to feed: the next step samples again
    out.clear()
    seq.record(Sampled(6, -0.1, 0.2), out)
    (event,) = events(out)
    assert (event.index, event.phase, event.text, out[0][2]) == (2, "answer", "d", 1)
    assert seq.context(2) == [100, 101, 1, 2, 90] and seq.context(3) == [100, 101, 1, 2, 90, 6]


def test_rewind_of_everything_read_feeds_the_last_token_and_the_ids() -> None:
    """When the caller read every event, nothing is taken back: last token and ids are fed before sampling."""
    seq, out = make(), []
    for token in (1, 2):
        seq.record(Sampled(token, -0.5, 1.0), out)
    seq.in_kv = 1
    assert seq.rewind(2, [90, 91]) == 0
    assert seq.tail == [1, 2, 90, 91] and seq.feeding


def test_appended_tokens_count_against_the_budget() -> None:
    """max_tokens covers events and appended ids: the budget is spent when the tail reaches it."""
    seq, out = make(max_tokens=4), []
    seq.record(Sampled(1, -0.5, 1.0), out)
    seq.rewind(1, [90, 91])
    assert seq.record(Sampled(2, -0.5, 1.0), out) is True
