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

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Dependency
from litestar.response import Stream

from gateway.errors import ContextLengthExceeded, ModelNotFound, RequestError
from gateway.http.decoding import decode_json
from gateway.http.worker_request import WorkerRequest, chat_messages, parse_worker_request
from gateway.http.worker_response import ResponseShape, sse_events, whole_response
from gateway.services import Services
from gateway.worker.local import LocalWorker
from gateway.worker.phases import PhaseSplitter, ThinkMarkers
from gateway.worker.protocol import ChatMessage, SamplingParams, TokenStream

Svc = Annotated[Services, Dependency(skip_validation=True)]


def _local(services: Services) -> LocalWorker:
    assert isinstance(services.worker, LocalWorker)  # the worker server always wraps the in-process model
    return services.worker


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
        req, extra = parse_worker_request(await request.body())
        if not req.messages:
            raise RequestError("'messages' must be a non-empty list.", param="messages")
        worker = _check_model(services, req)
        messages = chat_messages(req.messages)
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
        req, extra = parse_worker_request(await request.body())
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
    shape = ResponseShape(rid, req.model, chat, bool(req.logprobs), req.return_tokens_as_token_ids)
    if req.stream:
        options = req.stream_options or {}
        include_usage = bool(options.get("include_usage"))
        continuous = include_usage and bool(options.get("continuous_usage_stats"))
        return Stream(sse_events(stream, shape, include_usage, continuous), media_type="text/event-stream")
    return Response(await whole_response(stream, shape))
