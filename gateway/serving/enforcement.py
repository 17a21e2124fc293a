"""``Enforcer``: applies a request's policy engine to the live stream and runs its answer probes.

The engine itself (``gateway.policy.engine``) is pure; this is the impure half that feeds it
tokens and the worker's queue depth, asks the worker for probe generations when the engine
wants one, and tells the caller when to cancel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.worker.protocol import TokenEvent, TokenStream, Worker


@dataclass(frozen=True)
class Verdict:
    """What the pipeline does with the token just received: send it? stop after it? append text?"""

    stop: bool = False
    finish_reason: str | None = None
    append_text: str = ""
    include_token: bool = True


GO_ON = Verdict()


class Enforcer:
    def __init__(self, engine: Any, max_tokens: int, worker: Worker) -> None:
        self.engine = engine
        self.max_tokens = max_tokens
        self.worker = worker
        self.stop_rule: str | None = None

    @classmethod
    def for_route(cls, route: Any, budget: int, *, policy_off: bool, worker: Worker) -> Enforcer:
        if route.policy is None:
            return cls(None, budget, worker)
        from gateway.policy.engine import PolicyEngine

        engine = PolicyEngine.for_policy(route.policy, max_tokens=budget, enforce_rules=not policy_off)
        return cls(engine, budget, worker)

    @property
    def shadow(self) -> tuple[str, int] | None:
        """(rule, token index) a shadow-mode policy would have stopped at, if any."""
        hit = self.engine.shadow_hit if self.engine is not None else None
        return (hit.rule, hit.tokens) if hit is not None else None

    async def after_token(self, event: TokenEvent, stream: TokenStream) -> Verdict:
        if self.engine is None:
            return GO_ON
        decision = self.engine.feed(event, queue_depth=self.worker.queue_depth)
        probe = self.engine.pending_probe() if not decision.stop else None
        if probe is not None:
            # The probe's answer belongs after this token, so the token is always sent.
            result = await self.worker.probe(stream, probe.suffix, probe.max_tokens)
            decision = self.engine.feed_probe(result)
        if not decision.stop:
            return GO_ON
        self.stop_rule = decision.rule
        include = decision.include_token or probe is not None
        return Verdict(True, decision.finish_reason, decision.append_text, include)
