"""A request's run, specified against a scripted worker: what the client gets and what is recorded once."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.audit.record import AuditRecord
from gateway.errors import Draining, WorkerError
from gateway.policy.rules import Sentences
from gateway.policy.schema import Policy
from gateway.policy.store import ActivePolicy
from gateway.policy.thinking import ThinkingSpec
from gateway.serving.call import ChatCall
from gateway.serving.chat import ChatService
from gateway.serving.outcome import Delta
from gateway.serving.routing import Router
from gateway.worker.protocol import ChatMessage, TokenEvent
from tests.unit.serving.scripted import ScriptedWorker, events

SENTENCES = ["One", " sentence", ".", " Two", " sentences", ".", " Three", "."]


class OnePolicy:
    def __init__(self, policy: Policy) -> None:
        self.active = ActivePolicy(policy, 1, "h", "files")

    def get(self, domain: str) -> ActivePolicy:
        return self.active


class Audit:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def submit(self, record: AuditRecord) -> None:
        self.records.append(record)


def service(worker: ScriptedWorker, policy: Policy | None = None) -> tuple[ChatService, Audit]:
    audit = Audit()
    router = Router(None, OnePolicy(policy) if policy is not None else None)
    return ChatService(worker, router, max_concurrent_streams=4, audit=audit), audit


def call(**fields: Any) -> ChatCall:
    return ChatCall(messages=[ChatMessage("user", "hi")], **fields)


async def run_all(svc: ChatService, c: ChatCall) -> tuple[list[Delta], Any]:
    run = await svc.open(c)
    out = [d async for d in run.deltas()]
    run.close()
    return out, run


def text(deltas: list[Delta], field: str = "content") -> str:
    return "".join(getattr(d, field) for d in deltas)


async def test_an_answer_streams_as_content_and_is_audited_once() -> None:
    """No policy: every token is content, the finish is the worker's, one audit record."""
    svc, audit = service(ScriptedWorker(events(SENTENCES)))
    deltas, run = await run_all(svc, call(max_tokens=64))
    run.close()  # a second close changes nothing
    assert text(deltas) == "".join(SENTENCES)
    assert run.finish_reason == "stop"
    assert [r.completion_tokens for r in audit.records] == [len(SENTENCES)]
    assert svc.active_streams == 0


async def test_a_rule_stop_counts_exactly_the_tokens_sent() -> None:
    """A sentence rule cuts after its sentence: the client gets those tokens, and that is the count."""
    policy = Policy(domain="general", max_tokens=64, rules=(Sentences(max=1),))
    worker = ScriptedWorker(events(SENTENCES))
    svc, audit = service(worker, policy)
    deltas, _ = await run_all(svc, call())
    assert text(deltas) == "One sentence."
    assert worker.streams[0].cancelled
    rec = audit.records[0]
    assert (rec.stop_rule, rec.finish_reason, rec.completion_tokens) == ("sentences", "stop", 3)


async def test_a_spent_budget_reads_the_worker_to_its_end_instead_of_cancelling() -> None:
    """At the budget the worker ends too: its stream is read to the end (a remote engine keeps its connection)."""
    worker = ScriptedWorker(events(SENTENCES), finish="length")
    svc, audit = service(worker)
    deltas, run = await run_all(svc, call(max_tokens=5))
    assert text(deltas) == "".join(SENTENCES[:5]) and run.finish_reason == "length"
    assert worker.streams[0].finish_reason == "length"  # ended, not cancelled
    assert audit.records[0].completion_tokens == 5


async def test_a_worker_going_on_past_the_budget_is_cancelled() -> None:
    """An engine that sends a token beyond the budget it was given is cancelled; the client never sees it."""
    worker = ScriptedWorker(events(SENTENCES), overrun=2)
    svc, audit = service(worker)
    deltas, run = await run_all(svc, call(max_tokens=5))
    assert text(deltas) == "".join(SENTENCES[:5]) and run.finish_reason == "length"
    stream = worker.streams[0]
    assert stream.cancelled and stream.finish_reason is None  # cancelled, not read on to its end
    assert audit.records[0].completion_tokens == 5


async def test_an_engine_failing_after_the_last_budget_token_leaves_the_answer_whole() -> None:
    """The client has every token when the engine's end fails: the request still ends with length, no error."""
    worker = ScriptedWorker(events(SENTENCES), end_error=WorkerError("upstream broke off"))
    svc, audit = service(worker)
    deltas, run = await run_all(svc, call(max_tokens=5))
    assert text(deltas) == "".join(SENTENCES[:5]) and run.finish_reason == "length"
    assert audit.records[0].error is None and audit.records[0].completion_tokens == 5


async def test_thinking_goes_out_as_reasoning_and_answer_rules_never_see_it() -> None:
    """Three sentences of thought under a one-sentence answer rule: the thought is reasoning, the answer follows."""
    policy = Policy(domain="general", max_tokens=64, rules=(Sentences(max=1),))
    script = events(SENTENCES, phase="thinking") + events(["Yes", "."], start=len(SENTENCES))
    svc, audit = service(ScriptedWorker(script), policy)
    deltas, run = await run_all(svc, call())
    assert text(deltas, "reasoning") == "".join(SENTENCES)
    assert text(deltas) == "Yes."
    info = run.stopgate_info()
    assert info["reasoning_tokens"] == len(SENTENCES) and info["thinking_stop_rule"] is None
    assert audit.records[0].completion_tokens == len(SENTENCES) + 2


async def test_the_thinking_budget_ends_thinking_and_the_model_answers() -> None:
    """A thinking budget of 4: the end marker is appended after 4 thinking tokens, then the answer streams."""
    policy = Policy(domain="general", max_tokens=64, thinking=ThinkingSpec(mode="on", max_tokens=4))
    worker = ScriptedWorker(events(SENTENCES, phase="thinking"), after_end=events(["Done", "."], start=50))
    svc, audit = service(worker, policy)
    deltas, _ = await run_all(svc, call())
    assert worker.params is not None and worker.params.thinking == "on"
    assert worker.streams[0].ended_thinking_with == "\n</think>\n\n"
    assert text(deltas, "reasoning") == "".join(SENTENCES[:4]) and text(deltas) == "Done."
    rec = audit.records[0]
    assert (rec.reasoning_tokens, rec.thinking_stop_rule, rec.completion_tokens) == (4 + 3, "max_tokens", 4 + 3 + 2)


async def test_a_forced_end_leaves_room_for_the_answer() -> None:
    """A request budget of 10 with no thinking budget: thinking ends at 10 - reserve, the answer has the rest."""
    policy = Policy(domain="general", max_tokens=64, thinking=ThinkingSpec(mode="on", answer_reserve=4))
    long_thought = events(["x"] * 20, phase="thinking")
    worker = ScriptedWorker(long_thought, after_end=events(["a"] * 20, start=50))
    svc, audit = service(worker, policy)
    await run_all(svc, call(max_tokens=10))
    rec = audit.records[0]
    assert rec.thinking_stop_rule == "max_tokens" and rec.reasoning_tokens == 6 + 3
    assert rec.completion_tokens - rec.reasoning_tokens >= 1


async def test_reasoning_effort_none_turns_thinking_off() -> None:
    """reasoning_effort none asks the worker for no thinking at all."""
    policy = Policy(domain="general", max_tokens=64, thinking=ThinkingSpec(mode="on", max_tokens=4))
    worker = ScriptedWorker(events(["Hi", "."]))
    svc, _ = service(worker, policy)
    await run_all(svc, call(reasoning_effort="none"))
    assert worker.params is not None and worker.params.thinking == "off"


async def test_a_tool_call_turn_is_never_cut() -> None:
    """Once the model calls a tool, answer rules stop acting: the call streams whole, finish tool_calls."""
    policy = Policy(domain="general", max_tokens=64, rules=(Sentences(max=1),))
    parts = [{"index": 0, "function": {"arguments": a}} for a in ('{"city":', ' "Paris."', " }", "")]
    script = [TokenEvent(i, i, "", -0.1, tool_calls=(p,)) for i, p in enumerate(parts)]
    svc, audit = service(ScriptedWorker(script, finish="tool_calls"), policy)
    deltas, run = await run_all(svc, call())
    assert [d.tool_calls[0] for d in deltas] == parts
    assert run.finish_reason == "tool_calls"
    assert audit.records[0].stop_rule is None and audit.records[0].completion_tokens == 4


async def test_logprobs_come_with_the_tokens_they_belong_to() -> None:
    """logprobs: one entry per content token, spelling the content."""
    svc, _ = service(ScriptedWorker(events(SENTENCES)))
    deltas, _ = await run_all(svc, call(logprobs=True))
    entries = [e for d in deltas for e in d.logprobs]
    assert len(entries) == len(SENTENCES) and "".join(e["token"] for e in entries) == text(deltas)


async def test_an_engines_end_of_sequence_entry_closes_the_logprobs_and_the_count() -> None:
    """A remote engine's EOS (counted in its usage, no text) comes last in logprobs: entries == completion tokens."""
    eos = TokenEvent(len(SENTENCES), 2, "", -0.01)
    svc, audit = service(ScriptedWorker(events(SENTENCES), end_events=[eos]))
    deltas, run = await run_all(svc, call(logprobs=True))
    entries = [e for d in deltas for e in d.logprobs]
    assert entries[-1]["token"] == "" and entries[-1]["logprob"] == -0.01
    assert len(entries) == run.completion_tokens == audit.records[0].completion_tokens == len(SENTENCES) + 1


async def test_abort_ends_a_running_stream_with_the_drain_error() -> None:
    """abort_all (drain deadline) makes deltas() raise Draining; the record says so."""
    svc, audit = service(ScriptedWorker(events(SENTENCES)))
    run = await svc.open(call())
    got = []
    with pytest.raises(Draining):
        async for d in run.deltas():
            got.append(d)
            assert svc.abort_all() == 1
    run.close(error=Draining("x"))
    assert len(got) == 1 and audit.records[0].error is not None


async def test_a_draining_service_refuses_new_requests() -> None:
    """After begin_drain, open raises Draining and the refusal is audited."""
    svc, audit = service(ScriptedWorker(events(SENTENCES)))
    svc.begin_drain()
    with pytest.raises(Draining):
        await svc.open(call())
    assert audit.records[0].error is not None and audit.records[0].error.type == "Draining"


async def test_a_thinking_block_reopened_after_a_forced_end_is_answer_text() -> None:
    """After the gateway ended the thinking, a second block the model opens streams as content, never reasoning."""
    policy = Policy(domain="general", max_tokens=64, thinking=ThinkingSpec(mode="on", max_tokens=2))
    again = events(["", "Hm", "."], phase="thinking", start=50)
    worker = ScriptedWorker(events(["a", "b", "c"], phase="thinking"), after_end=events(["\n"], start=40) + again)
    svc, audit = service(worker, policy)
    deltas, _ = await run_all(svc, call())
    kinds = ["reasoning" if d.reasoning else "content" for d in deltas]
    assert kinds == ["reasoning", "reasoning", "content", "content", "content"]
    assert text(deltas) == "\nHm." and audit.records[0].reasoning_tokens == 2 + 3


async def test_a_sampled_request_generates_on_from_the_same_stream_after_the_rule_stop() -> None:
    """Sampled and stopped by a rule: the client gets one sentence, the full generation goes on in the same
    iteration of the stream (a remote stream cannot be read twice); its length, the token the rule stopped on
    included, is audited."""
    worker = ScriptedWorker(events(SENTENCES), once=True)
    policy = Policy(domain="general", max_tokens=64, rules=(Sentences(max=1),), sample_full_rate=1.0)
    svc, audit = service(worker, policy)
    out, _ = await run_all(svc, call(max_tokens=64))
    assert text(out) == "One sentence."
    assert await svc.wait_idle(5)  # the sample's generation goes on in the background
    assert audit.records[0].full_completion_tokens == len(SENTENCES)
