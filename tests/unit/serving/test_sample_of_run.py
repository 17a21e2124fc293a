"""Which finished requests become samples, and what a sample records."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gateway.autopilot.samples import Sample, SampleToken
from gateway.serving.outcome import Outcome
from gateway.serving.samples import sample_of_run
from gateway.worker.protocol import TokenEvent


def run_of(n: int, *, stop: list[str] | None = None, ended: str = "stop", thinking: int = 0) -> Any:
    events = [TokenEvent(i, 100 + i, f"w{i} ", -0.5, 0.1, "thinking" if i < thinking else "answer") for i in range(n)]
    route = SimpleNamespace(domain="small_talk", policy_version=3, policy_hash="abc", policy=object())
    return SimpleNamespace(
        events=events,
        route=route,
        request_id="chatcmpl-1",
        call=SimpleNamespace(stop=stop or []),
        stream=SimpleNamespace(finish_reason=ended),
    )


def outcome(**kw: Any) -> Outcome:
    base: dict[str, Any] = {
        "prompt_tokens": 5,
        "completion_tokens": 10,
        "reasoning_tokens": 0,
        "max_tokens": 128,
        "finish_reason": "stop",
        "stop_rule": None,
        "thinking_stop_rule": None,
        "shadow": None,
        "tool_call": False,
    }
    return Outcome(**(base | kw))


def test_a_request_that_ended_on_its_own_is_a_sample() -> None:
    """EOS: every event, no stopped_at, finish stop, the route's version and budget."""
    s = sample_of_run(run_of(10), outcome(), now=7.0)
    assert isinstance(s, Sample)
    assert (s.domain, s.policy_version, s.policy_hash, s.max_tokens, s.ts) == ("small_talk", 3, "abc", 128, 7.0)
    assert s.stopped_at is None and s.finish_reason == "stop" and len(s.events) == 10
    assert s.events[0] == SampleToken(100, "w0 ", -0.5, 0.1, "answer")


def test_a_rule_stopped_request_records_what_the_client_got() -> None:
    """Generated on after a rule stop: stopped_at is the answer tokens sent, finish is the continuation's."""
    s = sample_of_run(
        run_of(40, ended="length", thinking=4),
        outcome(completion_tokens=12, reasoning_tokens=4, stop_rule="sentences", full_completion_tokens=40),
    )
    assert s is not None and s.stopped_at == 8 and s.stop_rule == "sentences" and s.finish_reason == "length"
    assert s.thinking_tokens == 4 and s.answer_text(2) == "w4 w5 "


def test_cut_generations_are_not_samples() -> None:
    """Client stop strings, tool calls and a stop that was not generated on give no sample."""
    assert sample_of_run(run_of(5, stop=["\n"]), outcome()) is None
    assert sample_of_run(run_of(5), outcome(tool_call=True)) is None
    assert sample_of_run(run_of(5), outcome(stop_rule="load_budget", finish_reason="length")) is None
