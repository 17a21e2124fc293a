"""The model worker's own HTTP API (``stopgate worker``): OpenAI-compatible, with per-token logprobs.

``/v1/chat/completions`` and ``/v1/completions`` (prompt text or token ids), stream or not,
``logprobs`` / ``top_logprobs``; thinking streams as ``delta.reasoning_content`` (non-stream
``message.reasoning_content``), the way vLLM does with a reasoning parser, and
``chat_template_kwargs.enable_thinking`` switches it (true opens a thinking block even when the
template does not). Plus the vLLM extensions a gateway uses on a running answer (probes, a
forced end of thinking): ``continue_final_message`` and ``add_generation_prompt``;
``return_tokens_as_token_ids`` so a gateway sees token ids (``"token_id:123"``); ``/tokenize``.
Fields the worker does not read itself (tools, tool_choice, response_format, penalties,
logit_bias, user, metadata, ...) go to the local worker as ``SamplingParams.extra``: it applies
what it can and answers a 400 naming the ``param`` for what it cannot. A client that disconnects
cancels its generation. ``GET /healthz`` reports readiness and load for least-loaded routing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Controller, Request, Response, get, post
from litestar.params import Dependency
from litestar.response import Stream

from gateway.errors import ContextLengthExceeded, ModelNotFound, RequestError, StopgateError
from gateway.http.decoding import decode_json
from gateway.http.errors import describe, internal_error
from gateway.http.sse import DONE, frame
from gateway.services import Services
from gateway.worker.local import LocalWorker
from gateway.worker.phases import PhaseSplitter, ThinkMarkers
from gateway.worker.protocol import ChatMessage, SamplingParams, ThinkingMode, TokenEvent, TokenStream

log = structlog.get_logger(__name__)

Svc = Annotated[Services, Dependency(skip_validation=True)]


def _local(services: Services) -> LocalWorker:
    assert isinstance(services.worker, LocalWorker)  # the worker server always wraps the in-process model
    return services.worker


class WorkerRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    messages: list[dict[str, Any]] | None = None
    prompt: str | list[int] | None = None
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    return_tokens_as_token_ids: bool = False
    stream_options: dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @property
    def budget(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 256

    @property
    def thinking(self) -> ThinkingMode:
        switch = (self.chat_template_kwargs or {}).get("enable_thinking")
        return "model" if switch is None else ("on" if switch else "off")

    def alternatives(self, chat: bool) -> int:
        """How many alternatives per token: chat's ``top_logprobs``, completions' integer ``logprobs``."""
        if chat:
            return int(self.top_logprobs or 0) if self.logprobs else 0
        return int(self.logprobs) if isinstance(self.logprobs, int) and not isinstance(self.logprobs, bool) else 0


_FIELDS = frozenset(WorkerRequest.__struct_fields__)


def _parse(body: bytes) -> tuple[WorkerRequest, dict[str, Any]]:
    """The request, and the fields the local worker gets as ``SamplingParams.extra``."""
    try:
        raw = decode_json(body)  # hostile bodies are 400s, never 500s
        if not isinstance(raw, dict):
            raise RequestError("Request body must be a JSON object.")
        req = msgspec.convert({k: v for k, v in raw.items() if k in _FIELDS}, WorkerRequest)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RequestError(f"Invalid request: {exc}") from exc
    if req.budget < 1 or not 0.0 <= req.temperature <= 2.0 or not 0.0 < req.top_p <= 1.0:
        raise RequestError("max_tokens must be >= 1, temperature in [0, 2], top_p in (0, 1].")
    if not 0 <= (req.top_logprobs or 0) <= 20:
        raise RequestError("'top_logprobs' must be between 0 and 20.", param="top_logprobs")
    extra = {k: v for k, v in raw.items() if k not in _FIELDS and v is not None}
    return req, extra


def _messages(raw: list[dict[str, Any]]) -> list[ChatMessage]:
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RequestError("Each message needs a 'role'.", param=f"messages[{i}]")
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
        calls = m.get("tool_calls")
        out.append(
            ChatMessage(
                m["role"],
                content,
                name=m.get("name"),
                tool_calls=tuple(calls) if calls else None,
                tool_call_id=m.get("tool_call_id"),
            )
        )
    return out


class WorkerController(Controller):
    path = "/"

    @get("/healthz", summary="Alive; readiness and load for least-loaded routing")
    async def healthz(self, services: Svc) -> dict[str, Any]:
        w = services.worker
        return {"status": "ok", "ready": w.ready, "queue_depth": w.queue_depth, "active": w.active}

    @get("/v1/models", summary="The served model")
    async def models(self, services: Svc) -> dict[str, Any]:
        w = services.worker
        return {
            "object": "list",
            "data": [
                {
                    "id": w.model_id,
                    "object": "model",
                    "created": 0,
                    "owned_by": "stopgate",
                    "max_model_len": w.context_length,
                }
            ],
        }

    @post("/tokenize", status_code=200, summary="Token ids of a text (vLLM's shape)")
    async def tokenize(self, request: Request[Any, Any, Any], services: Svc) -> dict[str, Any]:
        raw = decode_json(await request.body())
        if not isinstance(raw, dict) or not isinstance(raw.get("prompt"), str):
            raise RequestError("'prompt' must be a string.", param="prompt")
        worker = _local(services)
        ids = worker.encode_text(raw["prompt"])
        return {"count": len(ids), "max_model_len": worker.context_length, "tokens": ids}

    @post("/v1/chat/completions", status_code=200)
    async def chat(self, request: Request[Any, Any, Any], services: Svc) -> Response[Any]:
        req, extra = _parse(await request.body())
        if not req.messages:
            raise RequestError("'messages' must be a non-empty list.", param="messages")
        worker = _check_model(services, req)
        messages = _messages(req.messages)
        params = _params(req, extra, chat=True)
        stream: TokenStream
        if req.continue_final_message:
            markers = ThinkMarkers.parse(services.settings.think_markers)
            stream = _continue(worker, messages, params, req.add_generation_prompt, markers)
        else:
            stream = await worker.generate(messages, params)
        return await _respond(req, stream, chat=True)

    @post("/v1/completions", status_code=200)
    async def completions(self, request: Request[Any, Any, Any], services: Svc) -> Response[Any]:
        req, extra = _parse(await request.body())
        if req.prompt is None or req.prompt == "" or req.prompt == []:
            raise RequestError("'prompt' must be a non-empty string or list of token ids.", param="prompt")
        worker = _check_model(services, req)
        ids = worker.encode_text(req.prompt) if isinstance(req.prompt, str) else list(req.prompt)
        params = _fit(worker, ids, _params(req, extra, chat=False))
        return await _respond(req, worker.generate_ids(ids, params), chat=False)


def _check_model(services: Services, req: WorkerRequest) -> LocalWorker:
    worker = _local(services)
    if req.model != worker.model_id:
        raise ModelNotFound(f"The model '{req.model}' does not exist.", param="model")
    return worker


def _params(req: WorkerRequest, extra: dict[str, Any], *, chat: bool) -> SamplingParams:
    return SamplingParams(
        max_tokens=req.budget,
        temperature=req.temperature,
        top_p=req.top_p,
        seed=req.seed,
        top_logprobs=req.alternatives(chat),
        thinking=req.thinking,
        extra=extra,
    )


def _fit(worker: LocalWorker, ids: list[int], params: SamplingParams) -> SamplingParams:
    room = worker.context_length - len(ids)
    if room < 1:
        raise ContextLengthExceeded(
            f"The prompt has {len(ids)} tokens; this model's context is {worker.context_length}.", param="messages"
        )
    return msgspec.structs.replace(params, max_tokens=min(params.max_tokens, room))


def _continue(
    worker: LocalWorker,
    messages: list[ChatMessage],
    params: SamplingParams,
    add_generation_prompt: bool,
    markers: ThinkMarkers,
) -> TokenStream:
    """Generation after the open last assistant message; in thinking when that message is."""
    if not messages or messages[-1].role != "assistant":
        raise RequestError("continue_final_message needs a final assistant message.", param="messages")
    ids = worker.encode_chat(
        messages, continue_final=True, add_generation_prompt=add_generation_prompt, thinking=params.thinking
    )
    splitter = PhaseSplitter(markers)
    splitter.feed(messages[-1].content or "")
    thinking = params.thinking != "off" and splitter.phase == "thinking"
    return worker.generate_ids(ids, _fit(worker, ids, params), thinking=thinking)


async def _respond(req: WorkerRequest, stream: TokenStream, *, chat: bool) -> Response[Any]:
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    shape = _Shape(rid, req.model, chat, bool(req.logprobs), req.return_tokens_as_token_ids)
    if req.stream:
        options = req.stream_options or {}
        include_usage = bool(options.get("include_usage"))
        continuous = include_usage and bool(options.get("continuous_usage_stats"))
        return Stream(_sse(stream, shape, include_usage, continuous), media_type="text/event-stream")
    return Response(await _whole(stream, shape))


async def _whole(stream: TokenStream, shape: _Shape) -> dict[str, Any]:
    events: list[TokenEvent] = []
    try:
        async for event in stream:
            events.append(event)
    finally:
        stream.cancel()
    return shape.whole(events, stream.finish_reason, stream.prompt_tokens)


class _Shape:
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
            body["usage"] = _usage_counts(prompt_tokens, 0, 0)
        return body

    def whole(self, events: list[TokenEvent], finish: str | None, prompt_tokens: int) -> dict[str, Any]:
        return {
            "id": self.rid,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [self._choice(events, _openai_finish(finish), True)],
            "usage": _usage(prompt_tokens, events),
        }

    def usage_chunk(self, prompt_tokens: int, events_seen: int, thinking: int) -> dict[str, Any]:
        return {
            "id": self.rid,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": _usage_counts(prompt_tokens, events_seen, thinking),
        }


def _usage(prompt_tokens: int, events: list[TokenEvent]) -> dict[str, Any]:
    return _usage_counts(prompt_tokens, len(events), sum(1 for e in events if e.phase == "thinking"))


def _usage_counts(prompt_tokens: int, completion: int, thinking: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "completion_tokens_details": {"reasoning_tokens": thinking},
    }


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


async def _sse(stream: Any, shape: _Shape, include_usage: bool, continuous: bool = False) -> AsyncIterator[bytes]:
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
            yield frame(shape.usage_chunk(stream.prompt_tokens, count, thinking))
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
