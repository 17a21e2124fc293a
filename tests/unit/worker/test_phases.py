"""Specs for the streaming phase splitter (gateway/worker/phases.py)."""

from __future__ import annotations

import random

import pytest

from gateway.worker.phases import PhaseSplitter, Piece, ThinkMarkers, split_all


def shown(pieces: list[Piece], phase: str) -> str:
    return "".join(p.text for p in pieces if p.phase == phase)


def test_plain_answer_passes_through_one_piece_per_token() -> None:
    """Text without markers is answer, one piece per token, given out at once."""
    s = PhaseSplitter()
    assert s.feed("Hello") == [Piece("answer", "Hello")]
    assert s.feed(" world") == [Piece("answer", " world")]
    assert s.finish() == []


def test_single_token_markers_count_as_thinking_with_empty_text() -> None:
    """A marker token is thinking and shows nothing; text between the markers is thinking."""
    pieces = split_all(["<think>", "hmm", "</think>", "Yes"])
    assert pieces == [Piece("thinking", ""), Piece("thinking", "hmm"), Piece("thinking", ""), Piece("answer", "Yes")]


def test_marker_split_across_tokens_is_held_then_resolved() -> None:
    """A marker in pieces is held back until complete; every token it touches is thinking."""
    s = PhaseSplitter()
    assert s.feed("<") == []
    assert s.feed("th") == []
    assert s.pending == 2
    assert s.feed("ink>") == [Piece("thinking", "")] * 3
    assert s.feed("idea") == [Piece("thinking", "idea")]
    assert s.feed("</") == []
    assert s.feed("think") == []
    assert s.feed(">") == [Piece("thinking", "")] * 3
    assert s.feed("Done") == [Piece("answer", "Done")]


def test_held_text_that_is_not_a_marker_is_shown_with_its_own_token() -> None:
    """'a <' then ' b': the '<' was held, then shown with the token that carried it."""
    s = PhaseSplitter()
    assert s.feed("a <") == []
    assert s.feed(" b") == [Piece("answer", "a <"), Piece("answer", " b")]


def test_failed_partial_marker_resolves_at_the_first_impossible_character() -> None:
    """'<th' + 'ought>' is no marker: both tokens are answer with their own text."""
    assert split_all(["<th", "ought>"]) == [Piece("answer", "<th"), Piece("answer", "ought>")]


def test_no_end_marker_stays_thinking_to_the_end() -> None:
    """Without an end marker everything after the start marker is thinking."""
    pieces = split_all(["<think>", "a", " b", " c"])
    assert [p.phase for p in pieces] == ["thinking"] * 4
    assert shown(pieces, "thinking") == "a b c"


def test_stream_ending_on_a_partial_marker_shows_the_held_text() -> None:
    """finish() gives out held text as ordinary text of the current phase."""
    s = PhaseSplitter(thinking=True)
    assert s.feed("so </thi") == []
    assert s.finish() == [Piece("thinking", "so </thi")]


def test_text_before_a_start_marker_is_answer() -> None:
    """Text before the start marker is answer; the marker opens thinking."""
    pieces = split_all(["Sure. ", "<think>", "why", "</think>", "Because."])
    assert shown(pieces, "answer") == "Sure. Because."
    assert shown(pieces, "thinking") == "why"


def test_starting_in_thinking_when_the_prompt_opened_the_block() -> None:
    """thinking=True: text before the end marker is thinking (DeepSeek-R1 style prompts)."""
    pieces = split_all(["plan", "</think>", "answer"], thinking=True)
    assert pieces == [Piece("thinking", "plan"), Piece("thinking", ""), Piece("answer", "answer")]


def test_repeated_start_marker_inside_thinking_is_removed_and_does_not_nest() -> None:
    """Markers toggle: a second start marker is dropped, the first end marker ends thinking."""
    pieces = split_all(["<think>", "a", "<think>", "b", "</think>", "c"])
    assert shown(pieces, "thinking") == "ab"
    assert shown(pieces, "answer") == "c"
    assert pieces[2] == Piece("thinking", "")


def test_stray_end_marker_in_the_answer_is_removed_without_effect() -> None:
    """An end marker while answering is not shown and leaves the phase at answer."""
    pieces = split_all(["x", "</think>", "y"])
    assert shown(pieces, "answer") == "xy"
    assert pieces[1] == Piece("thinking", "")


def test_thinking_may_open_again_after_an_answer() -> None:
    """Interleaved blocks: think, answer, think again, answer again."""
    pieces = split_all(["<think>", "a", "</think>", "b", "<think>", "c", "</think>", "d"])
    assert shown(pieces, "thinking") == "ac"
    assert shown(pieces, "answer") == "bd"


def test_text_glued_to_a_marker_in_one_token_is_thinking() -> None:
    """A token carrying part of a marker and other text is thinking; no thinking leaks into the answer."""
    pieces = split_all(["<think>", "done.</", "think", ">\n\nThe", " end"])
    assert shown(pieces, "thinking") == "done.\n\nThe"
    assert shown(pieces, "answer") == " end"
    assert "<" not in "".join(p.text for p in pieces)


def test_whole_block_in_one_token_removes_both_markers() -> None:
    """A chunk holding both markers shows the text around them, without markers, as thinking."""
    assert split_all(["a<think>b</think>c"]) == [Piece("thinking", "abc")]


def test_configurable_markers() -> None:
    """Other markers (e.g. gpt-oss-like channel tags) work the same way."""
    m = ThinkMarkers.parse("[THINK],[/THINK]")
    pieces = split_all(["[TH", "INK]", "x", "[/THINK]", "y"], m)
    assert shown(pieces, "thinking") == "x"
    assert shown(pieces, "answer") == "y"


def test_marker_parse_rejects_bad_values() -> None:
    """Markers are exactly two distinct non-empty strings."""
    for bad in ("<think>", "a,a", ",x", "a,b,c"):
        with pytest.raises(ValueError):
            ThinkMarkers.parse(bad)


def test_end_thinking_flushes_held_text_as_thinking_and_switches_to_answer() -> None:
    """A forced end: held text is thinking, the next token is answer."""
    s = PhaseSplitter(thinking=True)
    assert s.feed("ok <") == []
    assert s.end_thinking() == [Piece("thinking", "ok <")]
    assert s.phase == "answer"
    assert s.feed("Answer") == [Piece("answer", "Answer")]


def test_counts_are_exact_and_every_token_gets_one_piece() -> None:
    """Random tokenisations of one text: one piece per token, same shown text, markers never shown."""
    text = "Pre <think>step 1 < 2, so </thin k</think>\n\nResult <b> is 3</think> ok<think>more"
    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 25)))
        tokens = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        s = PhaseSplitter()
        pieces = [p for t in tokens for p in s.feed(t)] + s.finish()
        assert len(pieces) == len(tokens)
        assert s.thinking_tokens + s.answer_tokens == len(tokens)
        joined = "".join(p.text for p in pieces)
        assert joined == text.replace("<think>", "").replace("</think>", "")
        answer = shown(pieces, "answer")
        assert "step" not in answer and "more" not in answer
    one_char = split_all(list(text))  # one character per token: the exact split
    assert shown(one_char, "answer") == "Pre \n\nResult <b> is 3 ok"
    assert shown(one_char, "thinking") == "step 1 < 2, so </thin kmore"


def test_fast_path_per_token_cost_is_small() -> None:
    """A token without marker characters costs about a microsecond (well within the per-rule budget)."""
    import time

    s = PhaseSplitter(thinking=True)
    t0 = time.perf_counter()
    for _ in range(20000):
        s.feed(" word")
    per_token_us = (time.perf_counter() - t0) / 20000 * 1e6
    assert per_token_us < 20
