"""Offline replay over a recorded full generation makes the same decisions as the live pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.offline.generations import generate, probe_ids
from gateway.offline.replay import Decision, policy_engine, run_policy
from gateway.policy.rules import Loop, Probe, Repetition, Sentences
from gateway.policy.schema import Policy
from gateway.serving.call import Budget
from gateway.serving.enforcement import Enforcer
from gateway.worker.local import LocalWorker
from gateway.worker.protocol import ChatMessage, ProbeResult, SamplingParams
from tests.integration.conftest import running_local_worker

pytestmark = pytest.mark.model

CAP = 48
PROMPTS = (
    "Tom has 3 boxes with 4 apples each. He eats 2 apples. How many apples are left?",
    "Who wrote the novel Moby Dick?",
    "Write a Python function that returns the square of a number.",
    "Say hello and introduce yourself in one sentence.",
)
# Probes every 8 tokens that stop on two equal answers: decisions depend on real side generations.
PROBING = Policy(
    domain="general",
    max_tokens=CAP,
    min_tokens=4,
    rules=(
        Probe(every=8, suffix="\nFinal answer:", max_tokens=6, agree=2, min_confidence=0.0, answer="text"),
        Loop(max_period=16, min_repeats=3, min_span=12),
    ),
)
CUTTING = Policy(
    domain="general",
    max_tokens=CAP,
    min_tokens=4,
    rules=(Sentences(max=2), Repetition(ngram=4, max_repeats=1, window=48)),
)


@pytest.fixture(scope="module")
async def worker() -> AsyncIterator[LocalWorker]:
    # One request at a time: a lone row decodes exactly as the recorded one did.
    async with running_local_worker(max_batch=1) as w:
        yield w


async def live(worker: LocalWorker, policy: Policy, prompt: str) -> tuple[str, list[Decision], str | None]:
    """The serving pipeline's loop (``ChatRun.deltas`` + ``Enforcer``), recording each decision."""
    enforcer = Enforcer(policy, Budget(total=CAP, answer=CAP), worker=worker)
    stream = await worker.generate([ChatMessage("user", prompt)], SamplingParams(max_tokens=CAP))
    sent: list[str] = []
    trace: list[Decision] = []
    async for event in stream:
        before = enforcer.probes
        verdict = await enforcer.after_token(event, stream)
        probed = enforcer.probes > before
        trace.append(
            Decision(
                event.index, verdict.stop, enforcer.stop_rule if verdict.stop else None, verdict.include_token, probed
            )
        )
        sent.append((event.text if verdict.include_token else "") + verdict.append_text)
        if verdict.stop:
            stream.cancel()
            break
    return "".join(sent), trace, enforcer.stop_rule


async def offline(worker: LocalWorker, policy: Policy, prompt: str) -> tuple[str, list[Decision], str | None]:
    """Full inference recorded once, then the policy replayed over it with real probe generations."""
    ids = worker.encode_chat([ChatMessage("user", prompt)])
    gen = await generate(worker, ids, CAP)

    async def probe(prefix: list[int], suffix: str, max_tokens: int) -> ProbeResult:
        return await probe_ids(worker, [*prefix, *worker.encode_text(suffix)], max_tokens)

    trace: list[Decision] = []
    out = await run_policy(policy_engine(policy, CAP), gen, probe, trace)
    assert gen.text.startswith(out.text)  # greedy: the policy's output is a prefix of full inference
    return out.text, trace, out.stop_rule


@pytest.mark.parametrize("policy", [CUTTING, PROBING], ids=["cutting-rules", "probe-rules"])
async def test_replayed_decisions_equal_live_decisions(worker: LocalWorker, policy: Policy) -> None:
    """Every prompt: same decision at every token, same stop rule, same text sent."""
    stops = set()
    for prompt in PROMPTS:
        live_text, live_trace, live_rule = await live(worker, policy, prompt)
        off_text, off_trace, off_rule = await offline(worker, policy, prompt)
        assert off_trace == live_trace, prompt
        assert (off_text, off_rule) == (live_text, live_rule), prompt
        stops.add(live_rule)
    assert stops - {None}, "no rule fired on any prompt: the sample proves nothing"
