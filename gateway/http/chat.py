"""``POST /v1/chat/completions`` and ``GET /v1/models``: parse, hand to ``ChatService``, frame.

A failure before the first byte is an ordinary error response (the mapping table); after it,
one ``data: {"error": ...}`` frame and ``data: [DONE]``. A client that goes away cancels the
stream (Litestar cancels the response task), and the run is closed from ``finally`` either way.
Thinking goes out as ``reasoning_content`` (as vLLM's reasoning parsers and DeepSeek send it),
never inside ``content``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import structlog
from litestar import Controller, Request, Response, get, post
from litestar.response import Stream

from gateway.errors import ModelNotFound, StopgateError
from gateway.http.errors import describe, internal_error
from gateway.http.guards import admin_gate, api_key_guard
from gateway.http.protocol import (
    ChatCompletionRequest,
    ChunkFrames,
    chunk,
    merge_tool_calls,
    parse_chat_request,
    usage,
    usage_chunk,
)
from gateway.http.sse import DONE, frame, with_keepalive
from gateway.services import Services
from gateway.serving.call import DEFAULT_TEMPERATURE, ChatCall, new_request_id
from gateway.serving.outcome import Delta
from gateway.serving.run import ChatRun
from gateway.worker.protocol import ChatMessage

log = structlog.get_logger(__name__)

KEEPALIVE_INTERVAL_S = 10.0


class ChatController(Controller):
    path = "/v1"
    guards = [api_key_guard]  # noqa: RUF012 - Litestar's declaration style

    @get("/models", summary="Models served by this gateway")
    async def models(self, services: Services) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": services.worker.model_id, "object": "model", "created": 0, "owned_by": "stopgate"}],
        }

    @post("/chat/completions", summary="OpenAI-compatible chat completion (stream or not)", status_code=200)
    async def chat_completions(self, request: Request[Any, Any, Any], services: Services) -> Response[Any]:
        request_id = new_request_id()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        chat = services.require_chat()
        try:
            req, extra = parse_chat_request(await request.body())
            if req.model != services.worker.model_id:
                raise ModelNotFound(
                    f"The model '{req.model}' does not exist; GET /v1/models lists the served one.", param="model"
                )
        except StopgateError as exc:
            chat.reject(request_id, request.state.get("api_key_id"), exc)
            raise
        call = _call_from(req, extra, request, services, request_id)
        run = await chat.open(call)
        headers = {
            "x-stopgate-request-id": request_id,
            "x-stopgate-domain": run.route.domain,
            "x-stopgate-policy": f"{run.route.policy_name}@{run.route.policy_version}",
        }
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return Stream(
                with_keepalive(_sse(run, req.model, include_usage), KEEPALIVE_INTERVAL_S),
                media_type="text/event-stream",
                headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        return Response(await _complete(run, req.model), headers=headers)


def _message(m: Any) -> ChatMessage:
    calls = tuple(
        {"id": c.id, "type": c.type, "function": {"name": c.function.name, "arguments": c.function.arguments}}
        for c in m.tool_calls or ()
    )
    return ChatMessage(m.role, m.text(), m.name, calls or None, m.tool_call_id)


def _call_from(
    req: ChatCompletionRequest,
    extra: dict[str, Any],
    request: Request[Any, Any, Any],
    services: Services,
    request_id: str,
) -> ChatCall:
    admin = admin_gate(request).allows(request.headers.get("x-stopgate-admin-key"))
    policy_header = (request.headers.get("x-stopgate-policy") or "").strip().lower()
    requested = req.requested_max_tokens
    if requested is not None:
        requested = min(requested, services.settings.max_tokens_limit)
    if extra:
        log.info("fields_passed_through", fields=sorted(extra))
    return ChatCall(
        messages=[_message(m) for m in req.messages],
        max_tokens=requested,
        temperature=req.temperature if req.temperature is not None else DEFAULT_TEMPERATURE,
        top_p=req.top_p if req.top_p is not None else 1.0,
        seed=req.seed,
        stop=req.stop_sequences,
        logprobs=req.logprobs,
        top_logprobs=(req.top_logprobs or 0) if req.logprobs else 0,
        reasoning_effort=req.effort,
        extra=extra,
        api_key_id=request.state.get("api_key_id"),
        request_id=request_id,
        admin=admin,
        force_domain=request.headers.get("x-stopgate-domain") or None,
        policy_off=policy_header == "off",
    )


def _delta_body(d: Delta) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if d.reasoning:
        body["reasoning_content"] = d.reasoning
    if d.content or d.logprobs:
        body["content"] = d.content
    if d.tool_calls:
        body["tool_calls"] = [dict(c) for c in d.tool_calls]
    return body


async def _sse(run: ChatRun, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    rid, created = run.request_id, run.created
    disconnected = True
    error: BaseException | None = None
    frames = ChunkFrames(rid, created, model)
    try:
        yield frames.delta({"role": "assistant", "content": ""})
        async for d in run.deltas():
            yield frames.delta(_delta_body(d), list(d.logprobs) or None)
        yield frame(chunk(rid, created, model, {}, run.finish_reason, run.stopgate_info()))
        if include_usage:
            info = run.stopgate_info()
            yield frame(usage_chunk(rid, created, model, _usage(run, info)))
        yield DONE
        disconnected = False
    except StopgateError as exc:
        error, disconnected = exc, False
        yield frame(describe(exc)[1])
        yield DONE
    except Exception as exc:
        error, disconnected = exc, False
        log.exception("stream_failed")
        yield frame(internal_error("internal error while streaming"))
        yield DONE
    finally:
        run.close(client_disconnected=disconnected, error=error)


async def _complete(run: ChatRun, model: str) -> dict[str, Any]:
    error: BaseException | None = None
    content: list[str] = []
    reasoning: list[str] = []
    logprobs: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    try:
        async for d in run.deltas():
            content.append(d.content)
            reasoning.append(d.reasoning)
            logprobs.extend(d.logprobs)
            tool_calls.extend(d.tool_calls)
    except BaseException as exc:
        error = exc
        raise
    finally:
        run.close(error=error)
    text = "".join(content)
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None}
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    if tool_calls:
        message["tool_calls"] = merge_tool_calls(tool_calls)
    info = run.stopgate_info()
    return {
        "id": run.request_id,
        "object": "chat.completion",
        "created": run.created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": {"content": logprobs, "refusal": None} if run.call.logprobs else None,
                "finish_reason": run.finish_reason,
            }
        ],
        "usage": _usage(run, info),
        "stopgate": info,
        "system_fingerprint": None,
    }


def _usage(run: ChatRun, info: dict[str, Any]) -> dict[str, Any]:
    return usage(run.prompt_tokens, run.completion_tokens, info["reasoning_tokens"], run.cached_tokens)
