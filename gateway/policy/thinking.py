"""The ``thinking`` section of a policy: how a reasoning model's thinking phase is governed.

Rules here see thinking tokens only; the policy's top-level ``rules`` see answer tokens only.
When a thinking rule fires or the thinking budget is reached, the gateway ends the thinking
(appends ``end_text`` to the running generation) and the model writes its answer.
"""

from __future__ import annotations

from gateway.policy.candidates import CandidateTracker
from gateway.policy.engine import CONTINUE, ProbeRequest, StopDecision
from gateway.policy.evaluators import build_evaluator
from gateway.policy.evaluators.answers import ConvergenceEval, ProbeEval
from gateway.policy.evaluators.base import Evaluator
from gateway.policy.rules import AnswerConvergence
from gateway.policy.text import Step, TextTracker
from gateway.policy.thinking_spec import EffortBudgets, ThinkingSpec
from gateway.worker.protocol import ProbeResult, TokenEvent

DEFAULT_END_MARKER = "</think>"
BUDGET_RULE = "max_tokens"
"""``thinking_stop_rule`` when the thinking budget ended the thinking."""
_UNBOUNDED = 1 << 30

__all__ = ["BUDGET_RULE", "DEFAULT_END_MARKER", "EffortBudgets", "ThinkingEngine", "ThinkingSpec"]


class ThinkingEngine:
    """Per-request evaluator of a policy's thinking section; feed it every thinking-phase token.

    Pure and deterministic like ``PolicyEngine`` (no I/O, clock, logging). Live use::

        think = ThinkingEngine.for_request(policy.thinking, effort=req.reasoning_effort, max_tokens=budget)
        for event in stream:                      # while event.phase == "thinking"
            decision = think.feed(event)
            if decision.stop:                     # the token is already part of the thinking
                await worker.end_thinking(stream, end_marker)   # thinking_stop_rule = decision.rule
                continue                          # the answer phase follows
            if (probe := think.pending_probe()) is not None:
                decision = think.feed_probe(await worker.probe(stream, probe.suffix, probe.max_tokens))

    ``budget`` is the thinking budget in tokens (the marker tokens the worker reports as thinking
    count too); a decision names the rule that ended the thinking, ``max_tokens`` when the budget
    did. Thinking cuts always fall after the token just fed (``include_token`` is always True,
    ``finish_reason`` None: the generation goes on with the answer). ``answer`` is the answer the
    policy commits to if nothing else follows (used offline): the candidate a convergence rule
    settled on or a thinking probe agreed on, else the last candidate stated so far, else None
    (the last candidate needs ``track_answer=True`` or a convergence rule: live requests skip the scan).
    ``question`` (the user's last message) lets the convergence rule tell found values from given ones.
    """

    def __init__(
        self,
        spec: ThinkingSpec,
        *,
        budget: int | None,
        enforce_rules: bool = True,
        shadow: bool = False,
        end_marker: str = DEFAULT_END_MARKER,
        question: str | None = None,
        track_answer: bool = False,
    ) -> None:
        self.budget = None if budget is None else max(0, budget)
        self._shadow = shadow
        self._end_marker = end_marker
        self._candidates = CandidateTracker(question)
        self._text = TextTracker()
        self._step = Step()
        rules = spec.rules if enforce_rules else ()
        self._convergence: list[ConvergenceEval] = []
        self._probes: list[ProbeEval] = []
        self._evals: list[Evaluator] = []
        for rule in rules:
            if isinstance(rule, AnswerConvergence):  # shares the engine's candidates: one scan per token
                self._convergence.append(ConvergenceEval(rule, self._candidates))
                continue
            ev = build_evaluator(rule, self.budget or _UNBOUNDED)
            if isinstance(ev, ProbeEval):
                self._probes.append(ev)
            elif ev is not None:
                self._evals.append(ev)
        self._rules_live = bool(self._evals)
        # Candidates are scanned for a convergence rule, or for ``answer`` (offline replays ask).
        self._track = track_answer or bool(self._convergence)
        self.tokens = 0
        self.probes = 0
        self._pending: tuple[ProbeEval, ProbeRequest] | None = None
        self._final: StopDecision | None = None
        self._answer: str | None = None
        self.shadow_rule: str | None = None  # what a shadow policy's thinking rules would have stopped on
        self.shadow_tokens: int | None = None

    @classmethod
    def for_request(
        cls,
        spec: ThinkingSpec,
        *,
        effort: str | None = None,
        max_tokens: int | None = None,
        enforce_rules: bool = True,
        shadow: bool = False,
        end_marker: str = DEFAULT_END_MARKER,
        question: str | None = None,
        track_answer: bool = False,
    ) -> ThinkingEngine:
        """The engine for one request: the section's budget for ``effort`` (``none``: 0), kept
        ``answer_reserve`` tokens under the request's total budget ``max_tokens`` (both phases)."""
        budget = 0 if effort == "none" or spec.mode == "off" else spec.budget_for(effort)
        if max_tokens is not None:
            room = max(0, max_tokens - spec.answer_reserve)
            budget = room if budget is None else min(budget, room)
        return cls(
            spec,
            budget=budget,
            enforce_rules=enforce_rules,
            shadow=shadow,
            end_marker=end_marker,
            question=question,
            track_answer=track_answer,
        )

    @property
    def stopped(self) -> bool:
        return self._final is not None

    @property
    def stop_rule(self) -> str | None:
        """The rule that ended the thinking (``max_tokens`` for the budget), None while it runs."""
        return self._final.rule if self._final is not None else None

    @property
    def answer(self) -> str | None:
        if self._answer is not None:
            return self._answer
        last = self._candidates.last
        if last is None:
            return None
        quoted = self._candidates.spelling(last.key)
        return (quoted or last).text

    @property
    def allows_thinking(self) -> bool:
        """False when the budget is 0: do not open (or at once close) the thinking block."""
        return self.budget is None or self.budget > 0

    def feed(self, event: TokenEvent) -> StopDecision:
        """Take the next thinking token; after a stop, returns that stop again and changes nothing."""
        if self._final is not None:
            return self._final
        if self._pending is not None:  # the caller skipped the probe: the streak is broken
            self._pending[0].dropped()
            self._pending = None
        self.tokens += 1
        if self._track:
            self._candidates.feed(event.text)
        if self._rules_live or self._convergence:
            rule = self._evaluate(event)
            if rule is not None:
                return self._stop(rule)
        if self.budget is not None and self.tokens >= self.budget:
            return self._stop(BUDGET_RULE)
        if self._probes:
            for probe in self._probes:
                if probe.due(self.tokens):
                    request = ProbeRequest(self._end_marker + probe.spec.suffix, probe.spec.max_tokens)
                    self._pending = (probe, request)
                    break
        return CONTINUE

    def pending_probe(self) -> ProbeRequest | None:
        """The thinking probe due after the last ``feed``: its suffix already starts with the end
        marker (answer it with ``feed_probe`` before feeding on)."""
        return self._pending[1] if self._pending is not None else None

    def feed_probe(self, result: ProbeResult) -> StopDecision:
        """The result of the pending probe; ends the thinking once enough probes agree."""
        if self._pending is None or self._final is not None:
            return self._final or CONTINUE
        probe, _ = self._pending
        self._pending = None
        self.probes += 1
        if not probe.answer(result.text, result.confidence):
            return CONTINUE
        if self._shadow:
            self._record_shadow(probe.name)
            return CONTINUE
        self._answer = probe.agreed_answer or None
        return self._stop(probe.name)

    def finish(self) -> None:
        """The model ended its thinking itself: the unfinished last statement counts as stated."""
        self._candidates.flush()

    def _evaluate(self, event: TokenEvent) -> str | None:
        step = self._step
        if self._evals:  # only the token rules read boundaries; probes and convergence do not
            self._text.advance(step, event.text)
        step.token_id, step.logprob, step.entropy = event.token_id, event.logprob, event.entropy
        fired: str | None = None
        for ev in self._evals:
            if ev.step(step, self._text) and fired is None:
                fired = ev.name
        for conv in self._convergence:
            if conv.step(step, self._text) and fired is None:
                fired = conv.name
                if conv.settled is not None:
                    quoted = self._candidates.spelling(conv.settled.key)
                    self._answer = (quoted or conv.settled).text
        if fired is None or not self._shadow:
            return fired
        self._record_shadow(fired)
        self._answer = None
        return None

    def _record_shadow(self, rule: str) -> None:
        if self.shadow_rule is None:
            self.shadow_rule, self.shadow_tokens = rule, self.tokens
        self._rules_live = False
        self._convergence = []
        self._probes = []
        self._pending = None

    def _stop(self, rule: str) -> StopDecision:
        self._final = StopDecision(True, rule, None, True, "")
        self._pending = None
        return self._final
