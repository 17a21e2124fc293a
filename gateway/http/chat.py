"""``POST /v1/chat/completions`` and ``GET /v1/models``: parse, hand to ``ChatService``, frame.

A failure before the first byte is an ordinary error response (the mapping table); after it,
one ``data: {"error": ...}`` frame and ``data: [DONE]``. A client that goes away cancels the
stream (Litestar cancels the response task), and the run is closed from ``finally`` either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import structlog
from litestar import Controller, Request, Response, get, post
from litestar.response import Stream

from gateway.errors import ModelNotFound, StopgateError
from gateway.http.auth import AdminGate
from gateway.http.errors import describe, internal_error
from gateway.http.guards import api_key_guard
from gateway.http.protocol import ChatCompletionRequest, chunk, parse_chat_request, usage, usage_chunk
from gateway.http.sse import DONE, frame, with_keepalive
from gateway.services import Services
from gateway.serving.chat import ChatCall, ChatRun, new_request_id
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
        try:
            req, unknown = parse_chat_request(await request.body())
            if req.model != services.worker.model_id:
                raise ModelNotFound(
                    f"The model '{req.model}' does not exist; GET /v1/models lists the served one.", param="model"
                )
        except StopgateError as exc:
            services.chat.reject(request_id, request.state.get("api_key_id"), exc)
            raise
        if unknown:
            log.info("unknown_fields_ignored", fields=unknown)
        call = _call_from(req, request, services, request_id)
        run = await services.chat.open(call)
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


def _call_from(
    req: ChatCompletionRequest, request: Request[Any, Any, Any], services: Services, request_id: str
) -> ChatCall:
    admin = AdminGate(services.settings.admin_key).allows(request.headers.get("x-stopgate-admin-key"))
    policy_header = (request.headers.get("x-stopgate-policy") or "").strip().lower()
    requested = req.requested_max_tokens
    if requested is not None:
        requested = min(requested, services.settings.max_tokens_limit)
    return ChatCall(
        messages=[ChatMessage(m.role, m.text()) for m in req.messages],
        max_tokens=requested,
        temperature=req.temperature if req.temperature is not None else 1.0,
        top_p=req.top_p if req.top_p is not None else 1.0,
        seed=req.seed,
        stop=req.stop_sequences,
        api_key_id=request.state.get("api_key_id"),
        request_id=request_id,
        admin=admin,
        force_domain=request.headers.get("x-stopgate-domain") or None,
        policy_off=policy_header == "off",
    )


async def _sse(run: ChatRun, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    rid, created = run.request_id, run.created
    disconnected = True
    error: BaseException | None = None
    try:
        yield frame(chunk(rid, created, model, {"role": "assistant", "content": ""}))
        async for text in run.deltas():
            yield frame(chunk(rid, created, model, {"content": text}))
        yield frame(chunk(rid, created, model, {}, run.finish_reason, run.stopgate_info()))
        if include_usage:
            yield frame(usage_chunk(rid, created, model, run.prompt_tokens, run.completion_tokens))
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
    try:
        text = "".join([piece async for piece in run.deltas()])
    except BaseException as exc:
        error = exc
        raise
    finally:
        run.close(error=error)
    return {
        "id": run.request_id,
        "object": "chat.completion",
        "created": run.created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": run.finish_reason,
            }
        ],
        "usage": usage(run.prompt_tokens, run.completion_tokens),
        "stopgate": run.stopgate_info(),
        "system_fingerprint": None,
    }
