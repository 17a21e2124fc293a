"""``ChatService``: one chat request from routing to audit, with no knowledge of HTTP.

open(call)  -> route (classifier / operator override) -> pin the policy snapshot
            -> budget = min(client max_tokens, policy max_tokens) -> start the worker stream
run.deltas()   tokens -> policy engine after every token -> stop? cancel the worker
run.close()    exactly once, from the edge's ``finally``: cancel, count, write the audit record
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.audit.record import AuditDraft, Overrides, ShadowDecision
from gateway.errors import RateLimited
from gateway.serving.enforcement import Enforcer
from gateway.serving.routing import Route, Router
from gateway.serving.sampling import answers_agree, is_sampled
from gateway.serving.stop_strings import StopStringMatcher
from gateway.worker.protocol import ChatMessage, SamplingParams, TokenStream, Worker

log = structlog.get_logger(__name__)


def new_request_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


@dataclass(frozen=True)
class ChatCall:
    """A validated chat request as the pipeline needs it."""

    messages: list[ChatMessage]
    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    api_key_id: str | None = None
    request_id: str = field(default_factory=new_request_id)
    # Operator overrides: honoured only when ``admin`` (the edge checked the admin key).
    admin: bool = False
    force_domain: str | None = None
    policy_off: bool = False


class ChatRun:
    """One running request: iterate ``deltas()``, then read the outcome fields; ``close()`` once."""

    def __init__(
        self,
        service: ChatService,
        call: ChatCall,
        route: Route,
        stream: TokenStream,
        enforcer: Enforcer,
        draft: AuditDraft,
    ) -> None:
        self.service = service
        self.call = call
        self.route = route
        self.stream = stream
        self.enforcer = enforcer
        self.draft = draft
        self.request_id = call.request_id
        self.created = int(time.time())
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self._matcher = StopStringMatcher(call.stop)
        policy = route.policy
        self._sampled = policy is not None and is_sampled(call.request_id, policy.sample_full_rate)
        keep_text = self._sampled or (policy is not None and policy.audit.include_text)
        self._text: list[str] | None = [] if keep_text else None
        self._continue_after_stop = False
        self._closed = False

    @property
    def prompt_tokens(self) -> int:
        """From the worker: known at once locally, from the usage chunk for a remote worker."""
        return self.stream.prompt_tokens

    @property
    def max_tokens(self) -> int:
        return self.enforcer.max_tokens

    @property
    def stop_rule(self) -> str | None:
        return self.enforcer.stop_rule

    async def deltas(self) -> AsyncIterator[str]:
        """Text to send, token by token; the policy decides after each token whether to go on."""
        async for event in self.stream:
            self.completion_tokens += 1
            self.draft.first_token()
            decision = await self.enforcer.after_token(event, self.stream)
            if not decision.include_token:
                self.completion_tokens -= 1  # the cut falls before this token: it is never sent
            text = self._matcher.push((event.text if decision.include_token else "") + decision.append_text)
            if text:
                if self._text is not None:
                    self._text.append(text)
                yield text
            if self._matcher.matched:
                self.finish_reason = "stop"
                self.stream.cancel()
                return
            if decision.stop:
                self.finish_reason = decision.finish_reason
                if self._sampled and decision.finish_reason == "stop":
                    self._continue_after_stop = True  # close() generates on, unseen, for the audit sample
                else:
                    self.stream.cancel()
                break
        rest = self._matcher.flush()
        if rest:
            yield rest
        if self.finish_reason is None:
            # the worker ended it: EOS -> stop, its budget -> length
            self.finish_reason = "length" if self.stream.finish_reason == "length" else "stop"

    def stopgate_info(self) -> dict[str, Any]:
        return {
            "domain": self.route.domain,
            "domain_confidence": round(self.route.confidence, 4),
            "policy": self.route.policy_name,
            "policy_version": self.route.policy_version,
            "stop_rule": self.stop_rule,
            "completion_tokens": self.completion_tokens,
            "max_tokens": self.max_tokens,
        }

    def close(self, *, client_disconnected: bool = False, error: BaseException | None = None) -> None:
        """Release the worker and the stream slot, then audit. Safe to call more than once.

        A sampled request that a rule stopped first generates on to full length in the background
        (the client already has its answer), then audits with the measured comparison.
        """
        if self._closed:
            return
        self._closed = True
        if self._continue_after_stop and not client_disconnected and error is None:
            task = asyncio.get_running_loop().create_task(self._finish_sample())
            self.service.background.add(task)
            task.add_done_callback(self.service.background.discard)
            return
        self._finalize(client_disconnected, error)

    async def _finish_sample(self) -> None:
        sent = "".join(self._text or [])
        rest: list[str] = []
        extra = 0
        try:
            async for event in self.stream:
                extra += 1
                rest.append(event.text)
            self.draft.full_completion_tokens = self.completion_tokens + extra
            self.draft.answer_agreed = answers_agree(sent, sent + "".join(rest))
        except Exception as exc:  # the sample is best effort; the answer was already delivered
            log.warning("quality_sample_failed", error=type(exc).__name__)
        finally:
            self._finalize(False, None)

    def _finalize(self, client_disconnected: bool, error: BaseException | None) -> None:
        self.stream.cancel()
        draft = self.draft
        draft.completion_tokens = self.completion_tokens
        draft.prompt_tokens = self.prompt_tokens or draft.prompt_tokens
        draft.stop_rule = self.stop_rule
        draft.finish_reason = None if client_disconnected or error else self.finish_reason
        draft.client_disconnected = client_disconnected
        shadow = self.enforcer.shadow
        if shadow is not None:
            draft.shadow = ShadowDecision(rule=shadow[0], at_token=shadow[1])
        if error is not None:
            draft.fail(error)
        if self._text is not None and self.route.policy is not None and self.route.policy.audit.include_text:
            user = [m.content for m in self.call.messages if m.role == "user"]
            draft.include_text(user[-1] if user else "", "".join(self._text))
        self.service.release(self, client_disconnected=client_disconnected)


class ChatService:
    def __init__(
        self, worker: Worker, router: Router, *, max_concurrent_streams: int, audit: Any = None, metrics: Any = None
    ) -> None:
        self.worker = worker
        self.router = router
        self.audit = audit
        self.metrics = metrics
        self.max_concurrent_streams = max_concurrent_streams
        self.active_streams = 0
        self.ratelimit: Any = None  # gateway.ratelimit.RateLimiter, per API key
        self.background: set[asyncio.Task[None]] = set()  # quality samples finishing after their response

    async def open(self, call: ChatCall) -> ChatRun:
        """Route and start generating; a request refused here is audited here, then re-raised."""
        draft = AuditDraft(request_id=call.request_id, api_key_id=call.api_key_id, max_tokens=call.max_tokens)
        if call.force_domain is not None or call.policy_off:
            draft.overrides = Overrides(
                domain=call.force_domain, policy="off" if call.policy_off else None, honoured=call.admin
            )
        try:
            return await self._open(call, draft)
        except BaseException as exc:
            draft.fail(exc)
            self.submit_audit(draft)
            raise

    async def _open(self, call: ChatCall, draft: AuditDraft) -> ChatRun:
        if self.active_streams >= self.max_concurrent_streams:
            raise RateLimited(
                f"Too many concurrent streams (limit {self.max_concurrent_streams}); retry shortly.", retry_after=1
            )
        # Take the slot before the first await, so concurrent requests cannot all pass the check.
        self.active_streams += 1
        try:
            return await self._start(call, draft)
        except BaseException:
            self.active_streams -= 1
            raise

    async def _start(self, call: ChatCall, draft: AuditDraft) -> ChatRun:
        if self.ratelimit is not None and call.api_key_id:
            await self.ratelimit.check(call.api_key_id)
        route = await self.router.route(call)
        draft.domain, draft.domain_confidence = route.domain, route.confidence
        draft.policy, draft.policy_version, draft.policy_hash = (
            route.policy_name,
            route.policy_version,
            route.policy_hash or None,
        )
        budget = route.budget(call.max_tokens)
        params = SamplingParams(max_tokens=budget, temperature=call.temperature, top_p=call.top_p, seed=call.seed)
        # The worker tokenizes once, refuses a prompt longer than its context, and keeps the budget inside it.
        stream = await self.worker.generate(call.messages, params)
        draft.prompt_tokens = stream.prompt_tokens
        enforcer = Enforcer.for_route(route, budget, policy_off=call.admin and call.policy_off, worker=self.worker)
        draft.max_tokens = budget
        if self.metrics is not None:
            self.metrics.stream_opened()
        return ChatRun(self, call, route, stream, enforcer, draft)

    def release(self, run: ChatRun, *, client_disconnected: bool) -> None:
        self.active_streams -= 1
        record = run.draft.finish()
        if self.metrics is not None:
            self.metrics.stream_closed(run, record.ttft_ms)
            if client_disconnected:
                self.metrics.disconnected()
        log.info(
            "chat_completed",
            domain=run.route.domain,
            policy=run.route.policy_name,
            stop_rule=run.stop_rule,
            finish_reason=run.finish_reason,
            completion_tokens=run.completion_tokens,
            client_disconnected=client_disconnected,
            ttft_ms=record.ttft_ms,
            duration_ms=record.duration_ms,
        )
        if self.ratelimit is not None and run.call.api_key_id:
            self.ratelimit.submit_tokens(run.call.api_key_id, run.prompt_tokens + run.completion_tokens)
        if self.audit is not None:
            self.audit.submit(record)

    def reject(self, call_id: str, api_key_id: str | None, exc: BaseException) -> None:
        """Audit a request the edge refused before it reached ``open`` (e.g. a malformed body)."""
        draft = AuditDraft(request_id=call_id, api_key_id=api_key_id)
        draft.fail(exc)
        self.submit_audit(draft)

    def submit_audit(self, draft: AuditDraft) -> None:
        if self.audit is not None:
            self.audit.submit(draft.finish())
