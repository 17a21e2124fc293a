"""The stopping-policy engine: after every token, go on or stop, and which rule decided.

Pure and deterministic: no I/O, no clock, no logging, no randomness. The same calls in the same
order give the same decisions, which is what lets ``replay`` run a recorded generation offline.

Per request::

    engine = PolicyEngine(policy.rules, max_tokens=budget, min_tokens=policy.min_tokens)
    for event in stream:
        decision = engine.feed(event, queue_depth=worker.queue_depth)
        if decision.stop:
            if decision.include_token: send(event.text)
            send(decision.append_text); cancel the stream; break
        send(event.text)
        if (probe := engine.pending_probe()) is not None:
            decision = engine.feed_probe(await worker.probe(stream, probe.suffix, probe.max_tokens))
            ...  # same handling; the token is already sent

Invariants (held for every policy): never more than ``max_tokens`` tokens; rules never stop
before ``min_tokens`` tokens or while a ``` code fence is open (the guard is always on: a rule
that fires inside a fence waits for it to close); budgets end with ``length`` and rules with
``stop``. ``shadow`` evaluates the rules and records what would have stopped, but only the
budget stops. ``enforce_rules=False`` (the operator's ``policy: off``) keeps only ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import msgspec

from gateway.errors import RequestError
from gateway.policy.evaluators import build_evaluator
from gateway.policy.evaluators.answers import ProbeEval
from gateway.policy.evaluators.base import AFTER, BEFORE, Evaluator
from gateway.policy.rules import AnswerPattern, LoadBudget, RuleSpec
from gateway.policy.text import Step, TextTracker
from gateway.worker.protocol import ProbeResult, TokenEvent

if TYPE_CHECKING:
    from gateway.policy.schema import Policy

LOAD_BUDGET_RULE = LoadBudget.kind


class StopDecision(msgspec.Struct, frozen=True):
    """The engine's answer for one token (or probe).

    ``rule`` names the rule that stopped (``None`` for the hard budget). ``include_token`` False
    means the cut falls just before the token that was fed: do not send it. ``append_text`` is
    sent after the last token (an agreed probe answer).
    """

    stop: bool
    rule: str | None = None
    finish_reason: Literal["stop", "length"] | None = None
    include_token: bool = True
    append_text: str = ""


class ProbeRequest(msgspec.Struct, frozen=True):
    """A probe to run now: greedy ``max_tokens`` after the output so far + ``suffix``."""

    suffix: str
    max_tokens: int


class ShadowHit(msgspec.Struct, frozen=True):
    """What a shadow policy would have done: ``rule`` stopping with ``tokens`` tokens of output."""

    rule: str
    tokens: int
    finish_reason: Literal["stop", "length"]


class Outcome(msgspec.Struct, frozen=True):
    """The engine's account of a request so far (for the audit record and benchmarks)."""

    tokens: int
    stop_rule: str | None
    finish_reason: Literal["stop", "length"] | None
    append_text: str
    shadow: ShadowHit | None
    probes: int


CONTINUE = StopDecision(stop=False)


class PolicyEngine:
    """Per-request evaluator of one policy's rules; feed it every token in order."""

    def __init__(
        self,
        rules: Sequence[RuleSpec],
        *,
        max_tokens: int,
        min_tokens: int = 0,
        shadow: bool = False,
        enforce_rules: bool = True,
    ) -> None:
        if max_tokens < 1:
            raise RequestError(f"max_tokens must be >= 1, got {max_tokens}", param="max_tokens")
        self._max_tokens = max_tokens
        self._min_tokens = max(0, min_tokens)
        self._shadow = shadow
        active = list(rules) if enforce_rules else []
        self._load = [r for r in active if isinstance(r, LoadBudget)]
        built = [e for e in (build_evaluator(r, max_tokens) for r in active) if e is not None]
        # Probes decide on answers (``feed_probe``), not tokens: only the others are stepped per token.
        self._evals: list[Evaluator] = [e for e in built if not isinstance(e, ProbeEval)]
        self._probes = [e for e in built if isinstance(e, ProbeEval)]
        window = max((r.window for r in active if isinstance(r, AnswerPattern)), default=0)
        self._text = TextTracker(tail_chars=window + 8 if window else 0)
        self._step = Step()
        self._tokens = 0
        self._rules_live = bool(built)  # False once a shadow policy has recorded its hit
        self._pending: tuple[ProbeEval, ProbeRequest] | None = None
        self._probes_asked = 0
        self._final: StopDecision | None = None
        self._shadow_hit: ShadowHit | None = None

    @classmethod
    def for_policy(cls, policy: Policy, *, max_tokens: int | None = None, enforce_rules: bool = True) -> PolicyEngine:
        """The engine for one request: budget = the smaller of the client's and the policy's."""
        budget = policy.max_tokens if max_tokens is None else min(max_tokens, policy.max_tokens)
        return cls(
            policy.rules,
            max_tokens=budget,
            min_tokens=policy.min_tokens,
            shadow=policy.shadow,
            enforce_rules=enforce_rules,
        )

    @property
    def tokens(self) -> int:
        """Tokens of output so far (a token cut with ``include_token=False`` not counted)."""
        return self._tokens

    @property
    def shadow_hit(self) -> ShadowHit | None:
        return self._shadow_hit

    @property
    def outcome(self) -> Outcome:
        final = self._final
        return Outcome(
            tokens=self._tokens,
            stop_rule=final.rule if final else None,
            finish_reason=final.finish_reason if final else None,
            append_text=final.append_text if final else "",
            shadow=self._shadow_hit,
            probes=self._probes_asked,
        )

    def feed(self, event: TokenEvent, *, queue_depth: int = 0) -> StopDecision:
        """Take the next token; after a stop, returns that stop again and changes nothing."""
        if self._final is not None:
            return self._final
        if self._pending is not None:  # the caller skipped the probe: the streak is broken
            self._pending[0].dropped()
            self._pending = None
        step = self._step
        before, after = self._tokens, self._tokens + 1
        if self._rules_live:  # only the rules read the step (none after a shadow policy's hit)
            self._text.advance(step, event.text)
            step.token_id, step.logprob, step.entropy = event.token_id, event.logprob, event.entropy
            decision = self._evaluate(step, before, after)
            if decision is not None:
                return decision
        self._tokens = after
        if after >= self._max_tokens:
            return self._stop(StopDecision(True, None, "length"))
        limit = self._load_limit(queue_depth)
        if limit is not None and after >= limit:
            if not self._shadow:
                return self._stop(StopDecision(True, LOAD_BUDGET_RULE, "length"))
            self._record_shadow(ShadowHit(LOAD_BUDGET_RULE, after, "length"))
        if self._rules_live and not step.fence_after and after >= self._min_tokens:
            for probe in self._probes:
                if probe.due(after):
                    self._pending = (probe, ProbeRequest(probe.spec.suffix, probe.spec.max_tokens))
                    break
        return CONTINUE

    def pending_probe(self) -> ProbeRequest | None:
        """The probe due after the last ``feed`` (answer it with ``feed_probe`` before feeding on)."""
        return self._pending[1] if self._pending is not None else None

    def feed_probe(self, result: ProbeResult) -> StopDecision:
        """The result of the pending probe; stops once enough probes agree."""
        if self._pending is None or self._final is not None:
            return self._final or CONTINUE
        probe, _ = self._pending
        self._pending = None
        self._probes_asked += 1
        if not probe.answer(result.text, result.confidence):
            return CONTINUE
        decision = StopDecision(True, probe.name, "stop", True, probe.agreed_text)
        if self._shadow:
            self._record_shadow(ShadowHit(probe.name, self._tokens, "stop"))
            return CONTINUE
        return self._stop(decision)

    def _evaluate(self, step: Step, before: int, after: int) -> StopDecision | None:
        """Run every rule on the token (each must see it); the earliest allowed cut wins."""
        can_before = before >= max(1, self._min_tokens) and not step.fence_before
        can_after = after >= self._min_tokens and not step.fence_after
        best: tuple[int, str] | None = None
        for ev in self._evals:
            cuts = ev.step(step, self._text)
            if not cuts or (best is not None and best[0] == BEFORE):
                continue
            if cuts & BEFORE and can_before:
                best = (BEFORE, ev.name)
            elif cuts & AFTER and can_after and best is None:
                best = (AFTER, ev.name)
        if best is None:
            return None
        cut, rule = best
        if self._shadow:
            self._record_shadow(ShadowHit(rule, before if cut == BEFORE else after, "stop"))
            return None
        if cut == AFTER:
            self._tokens = after
        return self._stop(StopDecision(True, rule, "stop", cut == AFTER))

    def _load_limit(self, queue_depth: int) -> int | None:
        limit: int | None = None
        for rule in self._load:
            if queue_depth > rule.queue_depth:
                cap = max(rule.max_tokens, self._min_tokens)
                limit = cap if limit is None else min(limit, cap)
        return limit

    def _record_shadow(self, hit: ShadowHit) -> None:
        """Keep the first would-be stop; later rules would never have run, so stop evaluating."""
        if self._shadow_hit is None:
            self._shadow_hit = hit
        self._rules_live = False
        self._pending = None

    def _stop(self, decision: StopDecision) -> StopDecision:
        self._final = decision
        self._pending = None
        return decision


class Trace(msgspec.Struct, frozen=True):
    """A replayed generation: every decision in order (one per token, one per probe answered)."""

    decisions: list[StopDecision]
    outcome: Outcome


ProbeSource = Mapping[int, ProbeResult] | Callable[[int, ProbeRequest], ProbeResult | None]


def replay(
    engine: PolicyEngine,
    events: Iterable[TokenEvent],
    probe_results: ProbeSource | None = None,
    queue_depths: Sequence[int] | None = None,
) -> Trace:
    """Run recorded tokens through ``engine`` exactly as live feeding does.

    ``probe_results`` answers probes, keyed by the number of output tokens when the probe was
    asked (or a function of that number and the request); a missing answer skips the probe,
    as a live caller that does not answer it would.
    """
    decisions: list[StopDecision] = []
    for i, event in enumerate(events):
        decision = engine.feed(event, queue_depth=queue_depths[i] if queue_depths is not None else 0)
        decisions.append(decision)
        if decision.stop:
            break
        request = engine.pending_probe()
        if request is None or probe_results is None:
            continue
        tokens = engine.tokens
        result = probe_results(tokens, request) if callable(probe_results) else probe_results.get(tokens)
        if result is not None:
            decision = engine.feed_probe(result)
            decisions.append(decision)
            if decision.stop:
                break
    return Trace(decisions=decisions, outcome=engine.outcome)
