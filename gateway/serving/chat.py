"""``ChatService``: one chat request from routing to its recorded outcome, with no knowledge of HTTP.

open(call)   stream slot -> rate limit -> route (classifier / operator override, pinned policy)
             -> ``Budget.resolve`` (the one place) -> worker stream -> ``Enforcer`` -> ``ChatRun``;
             the worker stream may start while the classifier works (``_route_and_generate``)
run.deltas() the edge frames the output (``gateway.serving.run``)
run.close()  -> ``_record(run, outcome)``: exactly once per request, into metrics, the rate limiter,
             the audit log and, for sampled requests, the autopilot's sample store

Drain (SIGTERM): ``begin_drain`` refuses new requests, ``wait_idle`` waits for the running ones,
``abort_all`` ends whatever still runs with an error frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import structlog

from gateway.audit.record import AuditDraft, Overrides, ShadowDecision
from gateway.autopilot.samples import SampleSink
from gateway.errors import Draining, RateLimited
from gateway.serving.call import Budget, ChatCall
from gateway.serving.enforcement import Enforcer
from gateway.serving.outcome import Outcome
from gateway.serving.ports import AuditSink, RequestLimiter, StreamMetrics
from gateway.serving.routing import Route, Router
from gateway.serving.run import ChatRun
from gateway.serving.samples import sample_of_run
from gateway.serving.sampling import is_sampled
from gateway.worker.protocol import SamplingParams, ThinkingMode, TokenStream, Worker

if TYPE_CHECKING:
    from gateway.policy.schema import Policy

log = structlog.get_logger(__name__)


class ChatService:
    def __init__(
        self,
        worker: Worker,
        router: Router,
        *,
        max_concurrent_streams: int,
        default_max_tokens: int = 512,
        end_of_thinking: str = "\n</think>\n\n",
        audit: AuditSink | None = None,
        metrics: StreamMetrics | None = None,
        ratelimit: RequestLimiter | None = None,
        samples: SampleSink | None = None,
        early_start: bool = False,
    ) -> None:
        self.worker = worker
        self.router = router
        self.max_concurrent_streams = max_concurrent_streams
        self.default_max_tokens = default_max_tokens
        self.end_of_thinking = end_of_thinking
        self.audit = audit
        self.metrics = metrics
        self.ratelimit = ratelimit
        self.samples = samples  # the autopilot's sample store, when autopilot is wired
        self.early_start = early_start  # guess the worker request before the route is known (remote engines)
        self.background: set[asyncio.Task[None]] = set()  # quality samples finishing after their response
        self._runs: dict[str, tuple[ChatRun, AuditDraft]] = {}  # running requests and their audit drafts
        self._opening = 0
        self._draining = False

    @property
    def active_streams(self) -> int:
        return self._opening + len(self._runs)

    @property
    def draining(self) -> bool:
        return self._draining

    async def open(self, call: ChatCall) -> ChatRun:
        """Route and start generating; a request refused here is audited here, then re-raised."""
        draft = AuditDraft(request_id=call.request_id, api_key_id=call.api_key_id, max_tokens=call.max_tokens)
        if call.force_domain is not None or call.policy_off:
            draft.overrides = Overrides(
                domain=call.force_domain, policy="off" if call.policy_off else None, honoured=call.admin
            )
        try:
            if self._draining:
                raise Draining("The gateway is shutting down; retry on another replica.")
            if self.active_streams >= self.max_concurrent_streams:
                raise RateLimited(
                    f"Too many concurrent streams (limit {self.max_concurrent_streams}); retry shortly.",
                    retry_after=1,
                )
            # Take the slot before the first await, so concurrent requests cannot all pass the check.
            self._opening += 1
            try:
                run = await self._start(call, draft)
            finally:
                self._opening -= 1
        except BaseException as exc:
            draft.fail(exc)
            self._submit(draft)
            raise
        self._runs[call.request_id] = (run, draft)
        if self.metrics is not None:
            self.metrics.stream_opened()
        return run

    async def _start(self, call: ChatCall, draft: AuditDraft) -> ChatRun:
        if self.ratelimit is not None and call.api_key_id:
            await self.ratelimit.check(call.api_key_id)
        route, budget, params, stream = await self._route_and_generate(call, draft)
        policy = route.policy
        draft.prompt_tokens = stream.prompt_tokens
        draft.max_tokens = budget.total
        enforcer = Enforcer(
            policy,
            budget,
            worker=self.worker,
            rules_on=not call.rules_off,
            thinking_on=params.thinking != "off",
            end_text=self.end_of_thinking,
            question=call.last_user_text,
        )
        sampled = policy is not None and is_sampled(call.request_id, policy.sample_full_rate)
        return ChatRun(
            call, route, stream, enforcer, on_close=self._record, background=self.background, sampled=sampled
        )

    def _request(self, call: ChatCall, policy: Policy | None) -> tuple[Budget, SamplingParams]:
        """What the worker is asked for under ``policy``: the budget (resolved here only) and the params."""
        budget = Budget.resolve(
            call.max_tokens, policy, default_max_tokens=self.default_max_tokens, effort=call.reasoning_effort
        )
        params = SamplingParams(
            max_tokens=budget.total,
            temperature=call.temperature,
            top_p=call.top_p,
            seed=call.seed,
            top_logprobs=call.top_logprobs,
            thinking=_thinking_mode(policy, call),
            extra=call.extra,
        )
        return budget, params

    async def _route_and_generate(
        self, call: ChatCall, draft: AuditDraft
    ) -> tuple[Route, Budget, SamplingParams, TokenStream]:
        """The route, its budget and worker request, and the worker stream. The generation starts while the
        classifier works (its latency then overlaps the engine's prefill instead of adding to the TTFT)
        when no domain's policy would change what the worker is asked for (same budget, same thinking
        mode), or, with ``early_start``, with the request most domains would make: re-sent when the
        route's policy asks otherwise. The worker tokenizes once, refuses a prompt longer than its
        context, and keeps the budget inside it."""
        early = self._early_request(call)
        routing = asyncio.ensure_future(self.router.route(call))
        stream: TokenStream | None = None
        try:
            if early is not None:
                try:
                    stream = await self.worker.generate(call.messages, early)
                except BaseException:
                    with contextlib.suppress(Exception):  # the refusal's record still names the route
                        _note_route(draft, await routing)
                    raise
            route = await routing
        except BaseException:
            routing.cancel()
            if stream is not None:
                stream.cancel()
            raise
        _note_route(draft, route)
        budget, params = self._request(call, route.policy)
        if stream is not None and params != early:  # the guess was wrong, or a policy changed meanwhile
            stream.cancel()
            stream = None
        if stream is None:
            stream = await self.worker.generate(call.messages, params)
        return route, budget, params, stream

    def _early_request(self, call: ChatCall) -> SamplingParams | None:
        """The worker request most domains' policies would make (None: wait for the route).

        Exact when every domain asks the same; otherwise a guess that costs, when wrong, one request
        cancelled right after the classifier answers, so it is made only with ``early_start``."""
        if call.admin and call.force_domain is not None:
            return None  # no classifier to wait for
        policies = self.router.policies
        if policies is None:
            return self._request(call, None)[1]
        requests = [self._request(call, policies.get(d).policy)[1] for d in sorted(self.router.domain_names)]
        best = max(requests, key=requests.count)  # the first of the most common
        if not self.early_start and requests.count(best) < len(requests):
            return None
        return best

    def _record(self, run: ChatRun, outcome: Outcome) -> None:
        """The one place a finished request is counted: metrics, limits, log, audit, samples."""
        _, draft = self._runs.pop(run.request_id)
        draft.started = run.started
        draft.first_token_at = run.first_token_at
        _fill(draft, run, outcome)
        record = draft.finish()
        if self.metrics is not None:
            self.metrics.stream_closed(run.route.domain, outcome, record.ttft_ms)
        log.info(
            "chat_completed",
            domain=run.route.domain,
            policy=run.route.policy_name,
            stop_rule=outcome.stop_rule,
            thinking_stop_rule=outcome.thinking_stop_rule,
            finish_reason=outcome.finish_reason,
            completion_tokens=outcome.completion_tokens,
            reasoning_tokens=outcome.reasoning_tokens,
            client_disconnected=outcome.client_disconnected,
            ttft_ms=record.ttft_ms,
            duration_ms=record.duration_ms,
        )
        if self.ratelimit is not None and run.call.api_key_id:
            self.ratelimit.submit_tokens(run.call.api_key_id, outcome.prompt_tokens + outcome.completion_tokens)
        if self.audit is not None:
            self.audit.submit(record)
        if self.samples is not None and run.events is not None and outcome.error is None:
            self._submit_sample(run, outcome)

    def _submit_sample(self, run: ChatRun, outcome: Outcome) -> None:
        """A sampled request whose generation ran to its own end becomes a sample for the autopilot;
        its text goes to the sample store only, never to the audit log."""
        if outcome.client_disconnected or self.samples is None:
            return
        sample = sample_of_run(run, outcome)
        if sample is not None:
            self.samples.submit(sample)

    def reject(self, call_id: str, api_key_id: str | None, exc: BaseException) -> None:
        """Audit a request the edge refused before it reached ``open`` (e.g. a malformed body)."""
        draft = AuditDraft(request_id=call_id, api_key_id=api_key_id)
        draft.fail(exc)
        self._submit(draft)

    def _submit(self, draft: AuditDraft) -> None:
        if self.audit is not None:
            self.audit.submit(draft.finish())

    # -- drain ------------------------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Refuse new requests from now on (``Draining``, a 503)."""
        self._draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request runs (quality samples included); False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while self.active_streams or self.background:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def abort_all(self, reason: str = "The gateway shut down before this stream finished.") -> int:
        """End every running stream with an error frame; returns how many were running."""
        runs = [run for run, _ in self._runs.values()]
        for run in runs:
            run.abort(Draining(reason))
        return len(runs)


def _note_route(draft: AuditDraft, route: Route) -> None:
    draft.domain, draft.domain_confidence = route.domain, route.confidence
    draft.policy, draft.policy_version = route.policy_name, route.policy_version
    draft.policy_hash = route.policy_hash or None


def _thinking_mode(policy: Policy | None, call: ChatCall) -> ThinkingMode:
    if call.reasoning_effort == "none":
        return "off"
    if policy is not None and policy.thinking is not None:
        return policy.thinking.mode
    return "model"


def _fill(draft: AuditDraft, run: ChatRun, outcome: Outcome) -> None:
    draft.prompt_tokens = outcome.prompt_tokens or draft.prompt_tokens
    draft.completion_tokens = outcome.completion_tokens
    draft.reasoning_tokens = outcome.reasoning_tokens
    draft.thinking_stop_rule = outcome.thinking_stop_rule
    draft.stop_rule = outcome.stop_rule
    draft.finish_reason = outcome.finish_reason
    draft.client_disconnected = outcome.client_disconnected
    draft.full_completion_tokens = outcome.full_completion_tokens
    draft.answer_agreed = outcome.answer_agreed
    if outcome.shadow is not None:
        draft.shadow = ShadowDecision(rule=outcome.shadow.rule, at_token=outcome.shadow.tokens)
    if outcome.error is not None:
        draft.fail(outcome.error)
    policy = run.route.policy
    if outcome.text is not None and policy is not None and policy.audit.include_text:
        draft.include_text(run.call.last_user_text, outcome.text)
