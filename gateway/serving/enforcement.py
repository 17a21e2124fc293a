"""``Enforcer``: the impure half of stopping. It feeds the pure engines, runs probes and ends thinking.

Thinking tokens go to the thinking engine (the policy's ``thinking`` rules and budget), answer
tokens to the answer engine (the policy's ``rules`` and its budget); neither sees the other's
tokens. When the thinking engine stops, the enforcer appends the end-of-thinking marker to the
running generation (``Worker.end_thinking``) and the model writes its own answer, whose budget is
what the thinking left (never less than the reserve). A tool-call turn is never cut: once the
model emits a tool call, only the worker's budget bounds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from gateway.policy.engine import CONTINUE, PolicyEngine, ShadowHit, StopDecision
from gateway.policy.thinking import ThinkingEngine, ThinkingSpec
from gateway.serving.call import Budget
from gateway.worker.protocol import TokenEvent, TokenStream, Worker

if TYPE_CHECKING:
    from gateway.policy.schema import Policy

_NO_SECTION = ThinkingSpec()
"""A policy without a ``thinking`` section still bounds a model that thinks: total budget - reserve."""


class Enforcer:
    """One request's stopping state: both engines, the counts, the rules that fired."""

    def __init__(
        self,
        policy: Policy | None,
        budget: Budget,
        *,
        worker: Worker,
        rules_on: bool = True,
        thinking_on: bool = True,
        end_text: str = "\n</think>\n\n",
        question: str | None = None,
    ) -> None:
        self.policy = policy
        self.budget = budget
        self.worker = worker
        self.rules_on = rules_on
        self.end_text = end_text
        self.reasoning_tokens = 0
        self.forced_tokens = 0
        self.stop_rule: str | None = None
        self.thinking_stop_rule: str | None = None
        self.tool_call = False
        self._tool_tokens = 0
        self._answer: PolicyEngine | None = None
        # ``x-stopgate-policy: off`` (full inference) lets the model think until the request budget.
        self._thinking = self._thinking_engine(question) if thinking_on and rules_on else None

    @property
    def completion_tokens(self) -> int:
        answer = self._answer.tokens if self._answer is not None else 0
        return self.reasoning_tokens + self.forced_tokens + answer + self._tool_tokens

    @property
    def all_reasoning_tokens(self) -> int:
        """Thinking tokens including those of a forced end-of-thinking marker."""
        return self.reasoning_tokens + self.forced_tokens

    @property
    def probes(self) -> int:
        """Probe generations answered so far (both phases)."""
        answer = self._answer.outcome.probes if self._answer is not None else 0
        return answer + (self._thinking.probes if self._thinking is not None else 0)

    @property
    def shadow(self) -> ShadowHit | None:
        """What a shadow-mode policy would have stopped at (the answer's rule first)."""
        if self._answer is not None and self._answer.shadow_hit is not None:
            return self._answer.shadow_hit
        think = self._thinking
        if think is not None and think.shadow_rule is not None:
            return ShadowHit(think.shadow_rule, think.shadow_tokens or 0, "stop")
        return None

    async def after_token(self, event: TokenEvent, stream: TokenStream) -> StopDecision:
        """Feed one token to its phase's engine; a stop here ends the request (thinking never does)."""
        if event.phase == "thinking":
            await self._after_thinking_token(event, stream)
            return CONTINUE
        if event.tool_calls is not None:
            self.tool_call = True
        if self.tool_call:
            self._tool_tokens += 1
            return CONTINUE
        engine = self._answer or self._answer_engine()
        decision = engine.feed(event, queue_depth=self.worker.queue_depth)
        probe = engine.pending_probe() if not decision.stop else None
        if probe is not None:
            # The probe's answer belongs after this token, so the token is always sent.
            decision = engine.feed_probe(await self.worker.probe(stream, probe.suffix, probe.max_tokens))
            if decision.stop:
                decision = msgspec.structs.replace(decision, include_token=True)
        if decision.stop:
            self.stop_rule = decision.rule
        return decision

    async def _after_thinking_token(self, event: TokenEvent, stream: TokenStream) -> None:
        self.reasoning_tokens += 1
        engine = self._thinking
        if engine is None or self.thinking_stop_rule is not None or self._answer is not None:
            return
        decision = engine.feed(event)
        probe = engine.pending_probe() if not decision.stop else None
        if probe is not None:
            decision = engine.feed_probe(await self.worker.probe(stream, probe.suffix, probe.max_tokens))
        if decision.stop:
            self.thinking_stop_rule = decision.rule
            self.forced_tokens += await self.worker.end_thinking(stream, self.end_text)

    def _thinking_engine(self, question: str | None) -> ThinkingEngine:
        policy = self.policy
        spec = policy.thinking if policy is not None and policy.thinking is not None else _NO_SECTION
        return ThinkingEngine(
            spec,
            budget=self.budget.thinking_cap,
            shadow=policy.shadow if policy is not None else False,
            end_marker=self.end_text.strip(),
            question=question,
        )

    def _answer_engine(self) -> PolicyEngine:
        policy = self.policy
        self._answer = PolicyEngine(
            policy.rules if policy is not None else (),
            max_tokens=self.budget.answer_room(self.all_reasoning_tokens),
            min_tokens=policy.min_tokens if policy is not None else 0,
            shadow=policy.shadow if policy is not None else False,
            enforce_rules=self.rules_on,
        )
        return self._answer
