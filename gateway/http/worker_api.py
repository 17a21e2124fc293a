"""The model worker's own HTTP API (``stopgate worker``): OpenAI-compatible, with per-token logprobs.

``/v1/chat/completions`` and ``/v1/completions`` (prompt text or token ids), stream or not,
``logprobs``; plus the vLLM extensions a gateway uses for answer probes on a running answer
(``continue_final_message``, ``add_generation_prompt``) and ``return_tokens_as_token_ids`` so a
gateway sees token ids (``"token_id:123"``) for its repetition rules. A client that disconnects
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

from gateway.errors import ModelNotFound, RequestError, StopgateError
from gateway.http.errors import describe, internal_error
from gateway.http.protocol import WireMessage, usage, usage_chunk
from gateway.http.sse import DONE, frame
from gateway.services import Services
from gateway.worker.local import LocalWorker
from gateway.worker.protocol import ChatMessage, SamplingParams, TokenEvent

log = structlog.get_logger(__name__)

Svc = Annotated[Services, Dependency(skip_validation=True)]


def _local(services: Services) -> LocalWorker:
    assert isinstance(services.worker, LocalWorker)  # the worker server always wraps the in-process model
    return services.worker


class WorkerRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    messages: list[WireMessage] | None = None
    prompt: str | list[int] | None = None
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    logprobs: bool | int | None = None
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    return_tokens_as_token_ids: bool = False
    stream_options: dict[str, Any] | None = None

    @property
    def budget(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 256


def _parse(body: bytes) -> WorkerRequest:
    try:
        req = msgspec.json.decode(body, type=WorkerRequest)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RequestError(f"Invalid request: {exc}") from exc
    if req.budget < 1 or not 0.0 <= req.temperature <= 2.0 or not 0.0 < req.top_p <= 1.0:
        raise RequestError("max_tokens must be >= 1, temperature in [0, 2], top_p in (0, 1].")
    return req


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

    @post("/v1/chat/completions", status_code=200)
    async def chat(self, request: Request[Any, Any, Any], services: Svc) -> Response[Any]:
        req = _parse(await request.body())
        if not req.messages:
            raise RequestError("'messages' must be a non-empty list.", param="messages")
        messages = [ChatMessage(m.role, m.text()) for m in req.messages]
        ids = _local(services).encode_chat(
            messages, continue_final=req.continue_final_message, add_generation_prompt=req.add_generation_prompt
        )
        return await _serve(services, req, ids, chat=True)

    @post("/v1/completions", status_code=200)
    async def completions(self, request: Request[Any, Any, Any], services: Svc) -> Response[Any]:
        req = _parse(await request.body())
        if req.prompt is None or req.prompt == "" or req.prompt == []:
            raise RequestError("'prompt' must be a non-empty string or list of token ids.", param="prompt")
        ids = _local(services).encode_text(req.prompt) if isinstance(req.prompt, str) else list(req.prompt)
        return await _serve(services, req, ids, chat=False)


async def _serve(services: Services, req: WorkerRequest, ids: list[int], *, chat: bool) -> Response[Any]:
    worker = _local(services)
    if req.model != worker.model_id:
        raise ModelNotFound(f"The model '{req.model}' does not exist.", param="model")
    params = SamplingParams(
        max_tokens=req.budget,
        temperature=req.temperature,
        top_p=req.top_p,
        seed=req.seed,
    )
    stream = worker.generate_ids(ids, params)
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    shape = _Shape(rid, req.model, chat, bool(req.logprobs), req.return_tokens_as_token_ids)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.get("include_usage"))
        return Stream(_sse(stream, shape, include_usage), media_type="text/event-stream")
    events: list[TokenEvent] = []
    try:
        async for event in stream:
            events.append(event)
    finally:
        stream.cancel()
    return Response(shape.whole(events, stream.finish_reason, stream.prompt_tokens))


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
            return {
                "content": [
                    {"token": self._token(e), "logprob": e.logprob, "bytes": None, "top_logprobs": []} for e in events
                ]
            }
        return {
            "tokens": [self._token(e) for e in events],
            "token_logprobs": [e.logprob for e in events],
            "top_logprobs": None,
            "text_offset": [],
        }

    def _choice(self, events: list[TokenEvent], finish: str | None, whole: bool) -> dict[str, Any]:
        text = "".join(e.text for e in events)
        body: dict[str, Any] = {"index": 0, "logprobs": self._lp(events), "finish_reason": finish}
        if not self.chat:
            body["text"] = text
        elif whole:
            body["message"] = {"role": "assistant", "content": text}
        else:
            body["delta"] = {"content": text} if events else {}
        return body

    def piece(self, events: list[TokenEvent], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.rid,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [self._choice(events, finish, False)],
        }

    def whole(self, events: list[TokenEvent], finish: str | None, prompt_tokens: int) -> dict[str, Any]:
        return {
            "id": self.rid,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [self._choice(events, _openai_finish(finish), True)],
            "usage": usage(prompt_tokens, len(events)),
        }


def _openai_finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


async def _sse(stream: Any, shape: _Shape, include_usage: bool) -> AsyncIterator[bytes]:
    count = 0
    try:
        async for event in stream:
            count += 1
            yield frame(shape.piece([event]))
        yield frame(shape.piece([], _openai_finish(stream.finish_reason)))
        if include_usage:
            yield frame(usage_chunk(shape.rid, shape.created, shape.model, stream.prompt_tokens, count))
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
