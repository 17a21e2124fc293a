"""``ChatRun``: one running request. Iterate ``deltas()``; ``close()`` exactly once from the edge's ``finally``.

deltas()  token events -> ``Enforcer`` after every token (thinking and answer engines) -> ``Delta``s:
          thinking text as ``reasoning``, answer text through the stop-string matcher as ``content``
          (with its logprobs when asked), tool-call deltas as sent
close()   cancel the worker, then hand one ``Outcome`` to ``on_close``. A sampled request that a rule
          stopped first generates on to full length, unseen, so the outcome can say what was lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec
import structlog

from gateway.errors import StopgateError, WorkerError
from gateway.policy.quality import agrees
from gateway.serving.call import ChatCall
from gateway.serving.enforcement import Enforcer
from gateway.serving.outcome import Delta, Outcome
from gateway.serving.routing import Route
from gateway.serving.sampling import answers_agree
from gateway.serving.stop_strings import StopStringMatcher
from gateway.worker.protocol import TokenEvent, TokenStream

log = structlog.get_logger(__name__)

CloseHandler = Callable[["ChatRun", Outcome], None]

END_READ_S = 0.5
"""How long a stream whose budget is spent may take to end on its own."""


def logprob_entry(event: TokenEvent) -> dict[str, Any]:
    """One token's entry in OpenAI's ``logprobs.content`` list."""
    return {
        "token": event.text,
        "logprob": event.logprob,
        "bytes": list(event.text.encode("utf-8")),
        "top_logprobs": [
            {"token": alt.token, "logprob": alt.logprob, "bytes": list(alt.token.encode("utf-8"))}
            for alt in event.top_logprobs
        ],
    }


class ChatRun:
    def __init__(
        self,
        call: ChatCall,
        route: Route,
        stream: TokenStream,
        enforcer: Enforcer,
        *,
        on_close: CloseHandler,
        background: set[asyncio.Task[None]],
        sampled: bool = False,
    ) -> None:
        self.call = call
        self.route = route
        self.stream = stream
        # One iteration of the stream for the whole run: a sampled request goes on reading it after the
        # rule stop, and a remote stream's HTTP response cannot be read by a second iterator.
        self._events: AsyncIterator[TokenEvent] = aiter(stream)
        self.enforcer = enforcer
        self.request_id = call.request_id
        self.created = int(time.time())
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.finish_reason: str | None = None
        self.sampled = sampled
        #: every event of a sampled request (the full generation, for the autopilot's sample store)
        self.events: list[TokenEvent] | None = [] if sampled else None
        self._on_close = on_close
        self._background = background
        self._matcher = StopStringMatcher(call.stop)
        policy = route.policy
        keep_text = sampled or (policy is not None and policy.audit.include_text)
        self._text: list[str] | None = [] if keep_text else None
        self._stopped_by_rule = False
        self._answer_started = False
        self._aborted: StopgateError | None = None
        self._unsent: TokenEvent | None = None  # the token a rule stopped on without sending it
        self._closed = False

    @property
    def prompt_tokens(self) -> int:
        """From the worker: known at once locally, from the usage chunk for a remote worker."""
        return self.stream.prompt_tokens

    @property
    def cached_tokens(self) -> int:
        """Of the prompt tokens, those the worker's prefix cache held (usage ``prompt_tokens_details``)."""
        return self.stream.cached_tokens

    @property
    def completion_tokens(self) -> int:
        """Tokens generated, as the engine's usage counts them: an end-of-sequence token that a remote
        engine counts but sends no text for (``end_events``) included; it never reaches the rules."""
        return self.enforcer.completion_tokens + len(self._end_events)

    @property
    def _end_events(self) -> Sequence[TokenEvent]:
        """A remote stream's end-of-sequence tokens (``RemoteTokenStream.end_events``); none locally."""
        events: Sequence[TokenEvent] = getattr(self.stream, "end_events", ())
        return events

    async def deltas(self) -> AsyncIterator[Delta]:
        """Output piece by piece; the engines decide after each token whether to go on."""
        want_logprobs = self.call.logprobs
        async for event in self._events:
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            if event.phase == "thinking" and self._answer_started:
                # One thinking block per turn, as vLLM's reasoning parsers read it: a block the model opens
                # again after its answer began (or after a forced end) is answer text, markers left out.
                event = msgspec.structs.replace(event, phase="answer")
            if self.events is not None:
                self.events.append(event)
            decision = await self.enforcer.after_token(event, self.stream)
            if self.enforcer.thinking_stop_rule is not None or (event.phase == "answer" and event.text):
                self._answer_started = True
            if event.phase == "thinking":
                if event.text:
                    yield Delta(reasoning=event.text)
                continue
            if event.tool_calls is not None:
                yield Delta(tool_calls=event.tool_calls)
                continue
            sent = event.text if decision.include_token else ""
            text = self._matcher.push(sent + decision.append_text)
            entry = (logprob_entry(event),) if want_logprobs and decision.include_token else ()
            if text and self._text is not None:
                self._text.append(text)
            if text or entry:
                yield Delta(content=text, logprobs=entry)
            if self._matcher.matched:
                self.finish_reason = "stop"
                self.stream.cancel()
                return
            if decision.stop:
                if not decision.include_token:
                    self._unsent = event  # part of the full generation a sample goes on with
                self.finish_reason = decision.finish_reason
                self._stopped_by_rule = decision.finish_reason == "stop"
                if decision.finish_reason == "length" and decision.rule is None:
                    await self._read_end()
                elif not (self.sampled and self._stopped_by_rule):
                    self.stream.cancel()  # a sampled request generates on, unseen, in close()
                break
        rest = self._matcher.flush()
        if rest:
            if self._text is not None:
                self._text.append(rest)
            yield Delta(content=rest)
        if self._aborted is not None:
            raise self._aborted
        if self.finish_reason is None:
            # the worker ended it: its budget -> length, a tool call -> tool_calls, else (EOS) stop
            ended = self.stream.finish_reason
            self.finish_reason = ended if ended in ("length", "tool_calls") else "stop"
            if want_logprobs and self._end_events:  # one logprobs entry per token the engine counts
                yield Delta(content="", logprobs=tuple(logprob_entry(e) for e in self._end_events))

    async def _read_end(self) -> None:
        """The budget is spent, and the worker was asked for no more: read the stream's end (a remote
        engine's usage and ``[DONE]``) instead of disconnecting, so the engine's connection is kept
        for the next request. A token more, no end within ``END_READ_S``, or an engine failing after
        the last token (the client has every token already): it is cancelled."""
        try:
            async with asyncio.timeout(END_READ_S):
                if await anext(self._events, None) is None:
                    return
        except (TimeoutError, WorkerError) as exc:
            log.info("stream_end_unread", request_id=self.request_id, reason=type(exc).__name__)
        self.stream.cancel()

    def abort(self, error: StopgateError) -> None:
        """End the stream now with ``error`` (drain deadline): ``deltas()`` raises it."""
        self._aborted = error
        self.stream.cancel()

    def stopgate_info(self) -> dict[str, Any]:
        enforcer = self.enforcer
        return {
            "domain": self.route.domain,
            "domain_confidence": round(self.route.confidence, 4),
            "policy": self.route.policy_name,
            "policy_version": self.route.policy_version,
            "stop_rule": enforcer.stop_rule,
            "completion_tokens": self.completion_tokens,
            "max_tokens": enforcer.budget.total,
            "reasoning_tokens": enforcer.all_reasoning_tokens,
            "thinking_stop_rule": enforcer.thinking_stop_rule,
        }

    def close(self, *, client_disconnected: bool = False, error: BaseException | None = None) -> None:
        """Release the worker, then report the outcome once. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self.sampled and self._stopped_by_rule and not client_disconnected and error is None:
            task = asyncio.get_running_loop().create_task(self._finish_sample())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        self.stream.cancel()
        self._on_close(self, self._outcome(client_disconnected, error))

    async def _finish_sample(self) -> None:
        sent = "".join(self._text or [])
        held = [self._unsent] if self._unsent is not None else []
        rest = [e.text for e in held if e.phase == "answer"]
        extra = len(held)
        full: int | None = None
        agreed: bool | None = None
        try:
            async for event in self._events:
                extra += 1
                if self.events is not None:
                    self.events.append(event)
                if event.phase == "answer":
                    rest.append(event.text)
            full, agreed = self.completion_tokens + extra, self._agreed(sent, sent + "".join(rest))
        except Exception as exc:  # the sample is best effort; the answer was already delivered
            log.warning("quality_sample_failed", error=type(exc).__name__)
            self.events = None
        finally:
            self.stream.cancel()
            self._on_close(self, self._outcome(False, None, full, agreed))

    def _agreed(self, sent: str, full: str) -> bool:
        """The domain's own quality metric (the embedder-based one is left to the autopilot, off the loop)."""
        policy = self.route.policy
        spec = policy.quality if policy is not None else None
        if spec is None or spec.metric == "semantic":
            return answers_agree(sent, full)
        return agrees(spec, sent, full)

    @property
    def cut_by_client_stop(self) -> bool:
        """The client's own stop string ended it: the generation is not a full one."""
        return self._matcher.matched

    def _outcome(
        self,
        client_disconnected: bool,
        error: BaseException | None,
        full_completion_tokens: int | None = None,
        answer_agreed: bool | None = None,
    ) -> Outcome:
        enforcer = self.enforcer
        return Outcome(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            reasoning_tokens=enforcer.all_reasoning_tokens,
            max_tokens=enforcer.budget.total,
            finish_reason=None if client_disconnected or error else self.finish_reason,
            stop_rule=enforcer.stop_rule,
            thinking_stop_rule=enforcer.thinking_stop_rule,
            shadow=enforcer.shadow,
            tool_call=enforcer.tool_call,
            client_disconnected=client_disconnected,
            error=error,
            full_completion_tokens=full_completion_tokens,
            answer_agreed=answer_agreed,
            text="".join(self._text) if self._text is not None else None,
        )
