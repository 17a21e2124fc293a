"""Client stop sequences over a stream of text deltas."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.serving.stop_strings import StopStringMatcher


def run(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    m = StopStringMatcher(stops)
    out = ""
    for p in pieces:
        out += m.push(p)
        if m.matched:
            return out, True
    return out + m.flush(), False


def test_stop_string_split_across_deltas_is_never_sent() -> None:
    """A stop string arriving in pieces ends the text just before it."""
    assert run(["END"], ["hello E", "N", "D and more"]) == ("hello ", True)


def test_text_without_stop_passes_through_whole() -> None:
    """With no match, everything held back is released at the end."""
    assert run(["###"], ["a#", "b#", "#c"]) == ("a#b##c", False)


def test_no_stops_means_no_holding_back() -> None:
    """Without stop strings each delta is sent at once."""
    m = StopStringMatcher([])
    assert m.push("abc") == "abc"


@given(st.lists(st.text(alphabet="abXY", max_size=4), max_size=12), st.sampled_from(["XY", "aXb", "Y"]))
def test_output_is_the_text_up_to_the_first_stop(pieces: list[str], stop: str) -> None:
    """Whatever the chunking, the output is the full text cut at the first occurrence of the stop string."""
    text = "".join(pieces)
    out, matched = run([stop], pieces)
    cut = text.find(stop)
    assert matched == (cut >= 0)
    assert out == (text[:cut] if cut >= 0 else text)
