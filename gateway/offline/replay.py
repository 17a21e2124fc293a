"""A policy run replayed over a recorded full generation, exactly as the live pipeline runs it.

Greedy decoding makes this exact: with the same prompt the live stream produces the recorded
tokens one by one, and a stop only truncates it, so the policy's output is a prefix of the full
generation. The loop below is the one in ``gateway.serving.enforcement`` and
``gateway.serving.chat``: feed the token; on a stop send it only if ``include_token`` (a probe's
stop always keeps it) and then ``append_text``; otherwise send it and, if the engine asks for a
probe, answer it with a real side generation on prompt + the tokens sent so far + suffix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.offline.generations import Generation
from gateway.policy.engine import PolicyEngine
from gateway.policy.schema import Policy
from gateway.worker.protocol import ProbeResult

ProbeFn = Callable[[list[int], str, int], Awaitable[ProbeResult]]
"""(prompt + generated ids so far, suffix, max_tokens) -> the probe's answer."""


@dataclass(frozen=True)
class PolicyOutput:
    text: str
    tokens: int
    stop_rule: str | None
    finish_reason: str
    probes: int
    probe_tokens: int


@dataclass(frozen=True)
class Decision:
    """What happened at one token: stop or not, which rule, whether the token was sent, probed."""

    index: int
    stop: bool
    rule: str | None
    sent: bool
    probed: bool


def policy_engine(policy: Policy, cap: int) -> PolicyEngine:
    """The engine a live request with ``max_tokens=cap`` gets under ``policy``."""
    return PolicyEngine.for_policy(policy, max_tokens=cap)


async def run_policy(
    engine: PolicyEngine, gen: Generation, probe: ProbeFn | None, trace: list[Decision] | None = None
) -> PolicyOutput:
    """Drive ``engine`` over ``gen`` token by token, as the live pipeline does.

    ``trace`` (optional) receives one ``Decision`` per token fed.
    """
    sent: list[str] = []
    probe_tokens = 0
    finish = gen.finish_reason
    for i, event in enumerate(gen.events()):
        decision = engine.feed(event, queue_depth=0)
        request = engine.pending_probe() if not decision.stop else None
        if request is not None:
            if probe is None:
                raise LookupError("the policy asks for a probe but no probe source was given")
            result = await probe([*gen.prompt_ids, *gen.token_ids[: i + 1]], request.suffix, request.max_tokens)
            probe_tokens += result.tokens
            decision = engine.feed_probe(result)
        if trace is not None:
            trace.append(
                Decision(
                    i, decision.stop, decision.rule, decision.include_token or request is not None, request is not None
                )
            )
        if decision.stop:
            if decision.include_token or request is not None:
                sent.append(event.text)
            sent.append(decision.append_text)
            finish = decision.finish_reason or "stop"
            break
        sent.append(event.text)
    else:
        finish = "length" if gen.finish_reason == "length" else "stop"
    outcome = engine.outcome
    return PolicyOutput("".join(sent), outcome.tokens, outcome.stop_rule, finish, outcome.probes, probe_tokens)


async def replay_all(
    policies: Sequence[Policy],
    gens: Sequence[Generation],
    probe: ProbeFn | None,
    cap: int,
    on_done: Callable[[], None] | None = None,
) -> list[PolicyOutput]:
    """``policies[i]`` replayed over ``gens[i]``, all at once (probes overlap on the worker)."""

    async def one(policy: Policy, gen: Generation) -> PolicyOutput:
        out = await run_policy(policy_engine(policy, cap), gen, probe)
        if on_done is not None:
            on_done()
        return out

    return await asyncio.gather(*(one(p, g) for p, g in zip(policies, gens, strict=True)))
