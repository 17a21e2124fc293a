"""Online quality sampling: which requests are sampled, and when answers agree."""

from __future__ import annotations

from gateway.serving.sampling import answers_agree, final_answer, is_sampled


def test_sampling_follows_the_rate_and_the_request_id() -> None:
    """About `rate` of request ids are sampled, the same ids every time; 0 samples none."""
    ids = [f"chatcmpl-{i}" for i in range(4000)]
    share = sum(is_sampled(i, 0.25) for i in ids) / len(ids)
    assert 0.22 < share < 0.28
    # Pinned, so a sampler that varies between processes (Python's hash(), say) fails here.
    assert [n for n in range(40) if is_sampled(ids[n], 0.25)] == [1, 5, 6, 13, 23, 26, 37, 38, 39]
    assert not any(is_sampled(i, 0.0) for i in ids)


def test_final_answer_is_the_last_number_else_the_first_line() -> None:
    """Numbers decide when present (commas dropped); otherwise the normalised first line."""
    assert final_answer("So 1,200 + 5 = 1,205.") == "1205"
    assert final_answer("Paris!\nIt is lovely.") == "paris"


def test_a_changed_final_number_is_disagreement() -> None:
    """A continuation that changes the final number disagrees; one that adds prose does not."""
    assert not answers_agree("The total is 42.", "The total is 42. Wait, 43.")
    assert answers_agree("The total is 42.", "The total is 42. Hope that helps!")
