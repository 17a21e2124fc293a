"""ChunkReader: engine stream chunks into TokenEvents (one per token, phases, ids, tool calls)."""

from __future__ import annotations

import zlib
from typing import Any

from gateway.worker.phases import ThinkMarkers
from gateway.worker.protocol import TokenEvent, TopLogprob
from gateway.worker.remote_chunks import ChunkReader


def reader(top: int = 0) -> ChunkReader:
    return ChunkReader(ThinkMarkers(), top_logprobs=top)


def chat(content: str | None = None, *tokens: tuple[str, float], **delta: Any) -> dict[str, Any]:
    d: dict[str, Any] = dict(delta)
    if content is not None:
        d["content"] = content
    choice: dict[str, Any] = {"delta": d}
    if tokens:
        choice["logprobs"] = {"content": [{"token": t, "logprob": lp, "top_logprobs": []} for t, lp in tokens]}
    return choice


def read_all(r: ChunkReader, choices: list[dict[str, Any]]) -> list[TokenEvent]:
    return [e for c in choices for e in r.read(c)] + r.finish()


def test_one_token_chunk_gives_its_id_text_and_logprob() -> None:
    """A ``token_id:N`` token is read as id N; the chunk's text and logprob ride on the event."""
    assert reader().read(chat(" Paris", ("token_id:42", -0.25))) == [TokenEvent(0, 42, " Paris", -0.25)]


def test_several_tokens_in_one_chunk_give_one_event_each_with_the_text_on_the_last() -> None:
    """Indices count up; a token without an id is hashed; a missing logprob reads 0."""
    r = reader()
    r.index = 3
    choice = {
        "delta": {"content": "ab"},
        "logprobs": {"content": [{"token": "token_id:1", "logprob": -1.0}, {"token": "x"}]},
    }
    assert r.read(choice) == [TokenEvent(3, 1, "", -1.0), TokenEvent(4, zlib.crc32(b"x"), "ab", 0.0)]


def test_per_token_texts_are_used_when_they_spell_the_chunk() -> None:
    """Token texts that add up to the chunk's text give each event its own text."""
    events = reader().read(chat("ab", ("a", -1.0), ("b", -2.0)))
    assert [e.text for e in events] == ["a", "b"]


def test_chunk_without_logprobs_is_one_token_and_an_empty_delta_none() -> None:
    """Text alone becomes one event (id from its hash); an empty delta none."""
    assert reader().read({"delta": {"content": "hi"}}) == [TokenEvent(0, zlib.crc32(b"hi"), "hi", 0.0)]
    assert reader().read({"delta": {}}) == []


def test_end_of_sequence_entry_in_the_finishing_chunk_is_not_a_token() -> None:
    """vLLM's EOS logprob entry (no text, finish_reason stop) gives no event; it is kept for its logprobs."""
    r = reader()
    events = read_all(
        r, [chat("Hi", ("token_id:5", -0.1)), {**chat("", ("token_id:2", -0.01)), "finish_reason": "stop"}]
    )
    assert [e.token_id for e in events] == [5]
    assert len(r.end_events) == 1 and [(e.text, e.logprob) for e in r.end_events] == [("", -0.01)]


def test_reasoning_content_and_reasoning_are_thinking() -> None:
    """Reasoning-parser fields are the thinking phase; content is the answer."""
    choices = [
        chat(None, ("token_id:1", -0.1), reasoning_content="Let me"),
        chat(None, ("token_id:2", -0.1), reasoning=" think"),
        chat("Yes", ("token_id:3", -0.1)),
    ]
    r = reader()
    events = read_all(r, choices)
    assert [(e.phase, e.text) for e in events] == [("thinking", "Let me"), ("thinking", " think"), ("answer", "Yes")]
    assert r.raw_text == "<think>Let me think</think>Yes"


def test_swallowed_marker_token_takes_the_phase_before_it_and_leading_ones_wait() -> None:
    """A text-less token after thinking is thinking; text-less tokens at the start take the first phase."""
    choices = [
        chat(None, ("token_id:9", -0.1)),  # <think> the parser swallowed
        chat(None, ("token_id:1", -0.1), reasoning_content="hm"),
        chat(None, ("token_id:8", -0.1)),  # </think>
        chat("A", ("token_id:3", -0.1)),
    ]
    events = read_all(reader(), choices)
    assert [e.phase for e in events] == ["thinking", "thinking", "thinking", "answer"]


def test_inline_markers_in_content_split_into_phases_with_exact_counts() -> None:
    """Markers in content (no reasoning parser), split across tokens: removed, one event per token."""
    parts = ["<", "think", ">", "plan", "</", "think>", "Answer"]
    events = read_all(reader(), [chat(p, (f"token_id:{i}", -0.1)) for i, p in enumerate(parts)])
    assert [e.token_id for e in events] == list(range(7))
    assert "".join(e.text for e in events if e.phase == "thinking") == "plan"
    assert "".join(e.text for e in events if e.phase == "answer") == "Answer"


def test_top_logprobs_are_returned_up_to_the_number_asked() -> None:
    """Alternatives come back as TopLogprob, cut to the requested count."""
    entry = {
        "token": " a",
        "logprob": -0.5,
        "top_logprobs": [{"token": " a", "logprob": -0.5}, {"token": " b", "logprob": -1.5}],
    }
    events = reader(top=1).read({"delta": {"content": " a"}, "logprobs": {"content": [entry]}})
    assert events[0].top_logprobs == (TopLogprob(" a", -0.5),)
    assert reader(top=0).read({"delta": {"content": " a"}, "logprobs": {"content": [entry]}})[0].top_logprobs == ()


def test_tool_call_deltas_ride_on_a_text_less_event() -> None:
    """``delta.tool_calls`` becomes an event with empty text and the calls as sent."""
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": ""}}
    events = reader().read(chat(None, ("token_id:4", -0.2), tool_calls=[call]))
    assert events == [TokenEvent(0, 4, "", -0.2, tool_calls=(call,))]


def test_completions_chunks_are_read_too() -> None:
    """A /v1/completions chunk (text, tokens/token_logprobs/top_logprobs) gives the same events."""
    choice = {
        "text": " ok",
        "logprobs": {"tokens": [" ok"], "token_logprobs": [-0.3], "top_logprobs": [{" ok": -0.3, " no": -2.0}]},
    }
    events = reader(top=2).read(choice)
    assert events[0].text == " ok" and events[0].logprob == -0.3
    assert events[0].top_logprobs == (TopLogprob(" ok", -0.3), TopLogprob(" no", -2.0))


def test_forced_end_resolves_held_text_as_thinking_and_appends_the_marker() -> None:
    """end_thinking gives out held tokens as thinking; raw text ends with the appended marker."""
    r = ChunkReader(ThinkMarkers(), top_logprobs=0)
    assert r.read(chat("<think>", ("token_id:1", -0.1))) == [TokenEvent(0, 1, "", -0.1, phase="thinking")]
    assert r.read(chat("so <", ("token_id:2", -0.1))) == []
    assert r.end_thinking("</think>") == [TokenEvent(1, 2, "so <", -0.1, phase="thinking")]
    assert r.raw_text == "<think>so <</think>"
    assert r.read(chat("A", ("token_id:3", -0.1)))[0].phase == "answer"


def test_the_one_token_fast_path_reads_exactly_like_the_general_one() -> None:
    """Random chunk sequences (markers split over tokens, reasoning, tool calls, several tokens, roles,
    top logprobs) give the same events, raw text and end-token count through ``read`` as through ``_read_any``."""
    import random

    rng = random.Random(13)
    texts = [" the", " river", "<", "think", ">", "</", "think>", "<think>", " a</think> b", "\n", "", "é"]
    for _ in range(300):
        choices: list[dict[str, Any]] = []
        for _ in range(rng.randint(1, 12)):
            kind = rng.random()
            tops = [{"token": "t", "logprob": -1.0}, {"token": "u", "logprob": -2.0}]
            entry = {"token": f"token_id:{rng.randint(0, 99)}", "logprob": -rng.random(), "top_logprobs": tops}
            if kind < 0.6:
                delta: dict[str, Any] = {"content": rng.choice(texts)}
                if rng.random() < 0.2:
                    delta["role"] = "assistant"
                choices.append({"delta": delta, "logprobs": {"content": [entry]}})
            elif kind < 0.7:
                choices.append(chat(rng.choice(texts), ("a", -1.0), ("b", -0.5)))
            elif kind < 0.8:
                choices.append({"delta": {"reasoning_content": rng.choice(texts)}, "logprobs": {"content": [entry]}})
            elif kind < 0.9:
                call = {"index": 0, "function": {"arguments": "{"}}
                choices.append({"delta": {"tool_calls": [call]}, "logprobs": {"content": [entry]}})
            else:
                choices.append({"delta": {}, "logprobs": {"content": [entry]}, "finish_reason": "stop"})
        top = rng.choice([0, 1, 2])
        fast, general = reader(top), reader(top)
        got = [e for c in choices for e in fast.read(c)] + fast.finish()
        want = [e for c in choices for e in general._read_any(c)] + general.finish()
        assert got == want
        assert fast.raw_text == general.raw_text and fast.end_events == general.end_events
