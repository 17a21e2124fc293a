"""The worker API's responses: OpenAI shapes for chat and completions (vLLM's ``reasoning_content``,
logprobs in each's own layout, tool-call deltas, usage with reasoning tokens), whole or as SSE.

After the first byte of a stream any failure is one error frame and ``[DONE]``; a client that
disconnects cancels the generation.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import structlog

from gateway.errors import StopgateError
from gateway.http.errors import describe, internal_error
from gateway.http.protocol import usage
from gateway.http.sse import DONE, frame
from gateway.worker.protocol import TokenEvent, TokenStream

log = structlog.get_logger(__name__)


class ResponseShape:
    """OpenAI response shapes for chat and completions, with logprobs in each's own layout."""

    def __init__(self, rid: str, model: str, chat: bool, logprobs: bool, token_ids: bool) -> None:
        self.rid, self.model, self.chat, self.logprobs, self.token_ids = rid, model, chat, logprobs, token_ids
        self.created = int(time.time())

    def _token(self, e: TokenEvent) -> str:
        return f"token_id:{e.token_id}" if self.token_ids else e.text

    def _lp(self, events: list[TokenEvent]) -> dict[str, Any] | None:
        if not self.logprobs:
            return None
        if self.chat:
            return {"content": [self._entry(e) for e in events]}
        return {
            "tokens": [self._token(e) for e in events],
            "token_logprobs": [e.logprob for e in events],
            "top_logprobs": [{t.token: t.logprob for t in e.top_logprobs} for e in events]
            if any(e.top_logprobs for e in events)
            else None,
            "text_offset": [],
        }

    def _entry(self, e: TokenEvent) -> dict[str, Any]:
        token = self._token(e)
        return {
            "token": token,
            "logprob": e.logprob,
            "bytes": list(token.encode("utf-8")),
            "top_logprobs": [
                {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode("utf-8"))} for t in e.top_logprobs
            ],
        }

    def _delta(self, events: list[TokenEvent]) -> dict[str, Any]:
        delta: dict[str, Any] = {}
        thinking = "".join(e.text for e in events if e.phase == "thinking")
        answer = "".join(e.text for e in events if e.phase == "answer")
        if any(e.phase == "thinking" for e in events):
            delta["reasoning_content"] = thinking
        if answer or any(e.phase == "answer" and not e.tool_calls for e in events):
            delta["content"] = answer
        calls = [c for e in events for c in e.tool_calls or ()]
        if calls:
            delta["tool_calls"] = calls
        return delta

    def _choice(self, events: list[TokenEvent], finish: str | None, whole: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"index": 0, "logprobs": self._lp(events), "finish_reason": finish}
        if not self.chat:
            body["text"] = "".join(e.text for e in events)
        elif whole:
            delta = self._delta(events)
            content = delta.get("content", None if "tool_calls" in delta else "")
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if "reasoning_content" in delta:
                message["reasoning_content"] = delta["reasoning_content"]
            if "tool_calls" in delta:
                message["tool_calls"] = _merge_calls(delta["tool_calls"])
            body["message"] = message
        else:
            body["delta"] = self._delta(events)
        return body

    def piece(self, events: list[TokenEvent], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.rid,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [self._choice(events, finish, False)],
        }

    def role(self, prompt_tokens: int | None) -> dict[str, Any]:
        """The first chat chunk, as OpenAI and vLLM send it: the role, no token; with vLLM's
        ``continuous_usage_stats`` the usage so far (so the prompt tokens are known at once)."""
        body = self.piece([])
        body["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        if prompt_tokens is not None:
            body["usage"] = usage(prompt_tokens, 0)
        return body

    def whole(
        self, events: list[TokenEvent], finish: str | None, prompt_tokens: int, cached_tokens: int = 0
    ) -> dict[str, Any]:
        return {
            "id": self.rid,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [self._choice(events, _openai_finish(finish), True)],
            "usage": _usage(prompt_tokens, events, cached_tokens),
        }

    def usage_chunk(
        self, prompt_tokens: int, events_seen: int, thinking: int, cached_tokens: int = 0
    ) -> dict[str, Any]:
        return {
            "id": self.rid,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage(prompt_tokens, events_seen, thinking, cached_tokens),
        }


def _usage(prompt_tokens: int, events: list[TokenEvent], cached_tokens: int) -> dict[str, Any]:
    thinking = sum(1 for e in events if e.phase == "thinking")
    return usage(prompt_tokens, len(events), thinking, cached_tokens)


def _merge_calls(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool-call deltas folded into whole calls by ``index`` (arguments concatenated)."""
    calls: dict[int, dict[str, Any]] = {}
    for d in deltas:
        call = calls.setdefault(int(d.get("index", len(calls))), {"id": None, "type": "function", "function": {}})
        call["id"] = d.get("id") or call["id"]
        fn = d.get("function") or {}
        target = call["function"]
        target["name"] = target.get("name", "") + (fn.get("name") or "")
        target["arguments"] = target.get("arguments", "") + (fn.get("arguments") or "")
    return [calls[i] for i in sorted(calls)]


def _openai_finish(reason: str | None) -> str:
    return reason if reason in ("length", "tool_calls") else "stop"


async def whole_response(stream: TokenStream, shape: ResponseShape) -> dict[str, Any]:
    events: list[TokenEvent] = []
    try:
        async for event in stream:
            events.append(event)
    finally:
        stream.cancel()
    return shape.whole(events, stream.finish_reason, stream.prompt_tokens, stream.cached_tokens)


async def sse_events(
    stream: Any, shape: ResponseShape, include_usage: bool, continuous: bool = False
) -> AsyncIterator[bytes]:
    count = thinking = 0
    try:
        if shape.chat:
            yield frame(shape.role(stream.prompt_tokens if continuous else None))
        async for event in stream:
            count += 1
            thinking += event.phase == "thinking"
            yield frame(shape.piece([event]))
        yield frame(shape.piece([], _openai_finish(stream.finish_reason)))
        if include_usage:
            yield frame(shape.usage_chunk(stream.prompt_tokens, count, thinking, stream.cached_tokens))
        yield DONE
    except StopgateError as exc:
        yield frame(describe(exc)[1])
        yield DONE
    except Exception:  # after the first byte, any failure is one error frame, as on the gateway's stream
        log.exception("stream_failed")
        yield frame(internal_error("internal error while streaming"))
        yield DONE
    finally:
        stream.cancel()  # a disconnect lands here too: the row leaves the batch next step
