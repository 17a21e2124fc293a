"""Answer candidates in thinking text: kinds, spellings, hedges, and statements of what the question asks."""

from __future__ import annotations

from gateway.policy.answer_keys import answer_key, plain_spelling
from gateway.policy.candidates import CandidateTracker
from gateway.policy.questions import question_targets


def found(text: str, question: str | None = None, step: int = 3) -> list[tuple[str, str, bool]]:
    """(kind, text, hedged) of every candidate in ``text`` fed ``step`` characters at a time."""
    tracker = CandidateTracker(question)
    for i in range(0, len(text), step):
        tracker.feed(text[i : i + step])
    tracker.flush()
    return [(c.kind, c.text, c.hedged) for c in tracker.candidates]


def test_boxed_and_answer_statements() -> None:
    """\\boxed{} with nested braces and "the answer is X" are found, with the value trimmed."""
    got = found("So the answer is $42$.\nThen \\boxed{\\frac{1}{2}} done.\n")
    assert got == [("answer", "42", False), ("boxed", "\\frac{1}{2}", False)]


def test_guesses_are_hedged_and_prose_is_no_answer() -> None:
    """ "would be", "likely" and a question mark mark a guess; prose after "answer is" is not a candidate."""
    got = found("The answer would be 7. The answer is likely 2220. Is the answer 5? The answer is correct.\n")
    assert got == [("answer", "7", True), ("answer", "2220", True)]


def test_conclusions_are_values_only() -> None:
    """ "So ... = 12" is a conclusion; a free variable or a relation is still working, not a value."""
    got = found("So the total is 12.\nSo y = 124 - x.\nThus f(2) = -3 < 0.\nHence it is fixed.\n")
    assert got == [("conclusion", "12", False)]


def test_target_statements_need_the_question() -> None:
    """With the question "Find $p(8)$", "p(8) = -1/49" is a target statement; a trial value is not."""
    question = "Let $p(x)$ be a polynomial. Find $p(8).$"
    text = "If we try p(8) = 3 it fails.\nWe get p(8) = -1/49\n"
    assert found(text, question) == [("target", "-1/49", False)]
    assert found(text) == []
    pattern = question_targets(question)
    assert pattern is not None and pattern.search("p(8) = 1") and not pattern.search("p(x) = 1")


def test_spelling_prefers_what_a_grader_reads() -> None:
    """The quoted spelling of a key is ASCII/LaTeX when the thinking wrote one."""
    tracker = CandidateTracker()
    tracker.feed("So the answer is √51.\nSo the answer is \\sqrt{51}.\nSo the answer is √51.\n")
    quoted = tracker.spelling(answer_key("√51"))
    assert quoted is not None and quoted.text == "\\sqrt{51}"
    assert not plain_spelling("√51") and not plain_spelling("(-1)/49") and plain_spelling("-1/49")


def test_statement_split_does_not_depend_on_token_boundaries() -> None:
    """Feeding one character or a whole line at a time finds the same candidates."""
    text = "So x = 5.\nTherefore the answer is 5. Done\n"
    assert found(text, step=1) == found(text, step=len(text)) == found(text, step=4)


def test_hesitations_count_hedged_statements_since_the_last_candidate() -> None:
    """A "wait" statement after a candidate counts as a hesitation; a new candidate resets it."""
    tracker = CandidateTracker()
    tracker.feed("So the answer is 5. Wait, let me check that. ")
    assert tracker.hesitations == 1
    tracker.feed("So the answer is 5. ")
    assert tracker.hesitations == 0
