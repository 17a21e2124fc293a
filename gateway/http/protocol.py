"""OpenAI wire types for ``/v1/chat/completions`` and their parsing.

Transparent on the wire: agent turns (assistant ``tool_calls`` with ``content: null``, ``role: tool``
results), ``tools``/``tool_choice``, ``response_format``, penalties, ``logit_bias``, ``user``,
``metadata`` and any field we do not know are kept as sent and handed on (``pass_through``); a
remote engine gets them verbatim, the local worker refuses what it cannot do. Strict on what we
enforce: wrong types, empty message lists and out-of-range numbers are 400s naming the ``param``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from gateway.errors import RequestError
from gateway.http.decoding import decode_json

Role = Literal["system", "developer", "user", "assistant", "tool"]
Effort = Literal["none", "minimal", "low", "medium", "high"]


class ContentPart(msgspec.Struct, frozen=True):
    type: str
    text: str | None = None


class ToolCallFunction(msgspec.Struct, frozen=True):
    name: str
    arguments: str = ""


class ToolCall(msgspec.Struct, frozen=True):
    id: str
    function: ToolCallFunction
    type: str = "function"


class WireMessage(msgspec.Struct, frozen=True):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str | None:
        if self.content is None or isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    messages: list[WireMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: int | None = None
    reasoning_effort: Effort | None = None
    # Not enforced by the gateway: type-checked here, handed to the worker as sent.
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def effort(self) -> Literal["none", "low", "medium", "high"] | None:
        return "low" if self.reasoning_effort == "minimal" else self.reasoning_effort


PASS_THROUGH = (
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "user",
    "metadata",
)
"""Fields the gateway checks the type of but leaves to the worker (only those the client sent)."""

KNOWN_FIELDS = frozenset(ChatCompletionRequest.__struct_fields__)


def parse_chat_request(body: bytes) -> tuple[ChatCompletionRequest, dict[str, Any]]:
    """Decode and check a chat request; returns it and the fields to hand on to the worker as sent
    (the pass-through fields the client set, and every field we do not know)."""
    raw = decode_json(body)  # hostile bodies (depth, huge numbers, duplicate keys, bad UTF-8) are 400s
    if not isinstance(raw, dict):
        raise RequestError("Request body must be a JSON object.")
    extra = {k: v for k, v in raw.items() if k not in KNOWN_FIELDS or (k in PASS_THROUGH and v is not None)}
    try:
        req = msgspec.convert(raw, ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        raise RequestError(f"Invalid request: {exc}", param=_param_of(str(exc))) from exc
    _check(req)
    return req, extra


def _param_of(message: str) -> str | None:
    # msgspec says "... - at `$.messages[0].content`"
    if "at `$." in message:
        return message.rsplit("at `$.", 1)[1].rstrip("`")
    if "missing required field" in message:
        return message.rsplit("`", 2)[-2] if message.count("`") >= 2 else None
    return None


def _check(req: ChatCompletionRequest) -> None:
    if not req.messages:
        raise RequestError("'messages' must be a non-empty list.", param="messages")
    if not any(m.role == "user" for m in req.messages):
        raise RequestError("'messages' must contain at least one user message.", param="messages")
    for i, m in enumerate(req.messages):
        if m.content is None and not (m.role == "assistant" and m.tool_calls):
            raise RequestError(
                "'content' may be null only on an assistant message with tool_calls.", param=f"messages[{i}].content"
            )
        if m.role == "tool" and not m.tool_call_id:
            raise RequestError("A tool message needs 'tool_call_id'.", param=f"messages[{i}].tool_call_id")
    for name in ("max_tokens", "max_completion_tokens"):
        value = getattr(req, name)
        if value is not None and value < 1:
            raise RequestError(f"'{name}' must be >= 1, got {value}.", param=name)
    if req.temperature is not None and not 0.0 <= req.temperature <= 2.0:
        raise RequestError("'temperature' must be between 0 and 2.", param="temperature")
    if req.top_p is not None and not 0.0 < req.top_p <= 1.0:
        raise RequestError("'top_p' must be in (0, 1].", param="top_p")
    if req.seed is not None and not -(2**63) <= req.seed < 2**63:
        raise RequestError("'seed' must be a 64-bit integer.", param="seed")
    if req.n != 1:
        raise RequestError("Only n=1 is supported.", param="n")
    if req.top_logprobs is not None and not 0 <= req.top_logprobs <= 20:
        raise RequestError("'top_logprobs' must be between 0 and 20.", param="top_logprobs")
    if req.top_logprobs and not req.logprobs:
        raise RequestError("'top_logprobs' needs 'logprobs': true.", param="top_logprobs")
    for name in ("frequency_penalty", "presence_penalty"):
        value = getattr(req, name)
        if value is not None and not -2.0 <= value <= 2.0:
            raise RequestError(f"'{name}' must be between -2 and 2.", param=name)
    stops = req.stop_sequences
    if len(stops) > 4 or any(not s for s in stops):
        raise RequestError("'stop' takes up to 4 non-empty strings.", param="stop")


# -- responses (plain dicts: the shapes are OpenAI's, plus our "stopgate" object) ------------------


def chunk(
    rid: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    stopgate: dict[str, Any] | None = None,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    choice = {
        "index": 0,
        "delta": delta,
        "logprobs": {"content": logprobs, "refusal": None} if logprobs else None,
        "finish_reason": finish_reason,
    }
    body: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [choice],
    }
    if stopgate is not None:
        body["stopgate"] = stopgate
    return body


_encode = msgspec.json.Encoder().encode
_NULL = b"null"


class ChunkFrames:
    """The SSE frames of one stream's chunks, byte for byte ``frame(chunk(rid, created, model, ...))``:
    what never changes within a stream (id, created, model) is encoded once, so a token costs the
    encoding of its own delta only."""

    __slots__ = ("_head",)

    def __init__(self, rid: str, created: int, model: str) -> None:
        head = _encode({"id": rid, "object": "chat.completion.chunk", "created": created, "model": model})
        self._head = b"data: " + head[:-1] + b',"choices":[{"index":0,"delta":'

    def delta(self, delta: dict[str, Any], logprobs: list[dict[str, Any]] | None = None) -> bytes:
        """A chunk of ``delta`` (no finish reason, no ``stopgate`` object), framed."""
        lp = _encode({"content": logprobs, "refusal": None}) if logprobs else _NULL
        return b"".join((self._head, _encode(delta), b',"logprobs":', lp, b',"finish_reason":null}]}\n\n'))


def usage(
    prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0, cached_tokens: int = 0
) -> dict[str, Any]:
    """OpenAI's usage object; ``completion_tokens`` counts both phases, thinking in the details; the
    prompt tokens a prefix cache held in ``prompt_tokens_details.cached_tokens``."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


def usage_chunk(rid: str, created: int, model: str, counts: dict[str, Any]) -> dict[str, Any]:
    """The last chunk of a stream with ``stream_options.include_usage``: no choices, the usage."""
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": counts,
    }


def merge_tool_calls(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Streamed ``tool_calls`` deltas folded into whole calls (by ``index``; arguments concatenated)."""
    calls: dict[int, dict[str, Any]] = {}
    for d in deltas:
        index = int(d.get("index", len(calls)))
        call = calls.setdefault(index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        if d.get("id"):
            call["id"] = d["id"]
        if d.get("type"):
            call["type"] = d["type"]
        fn = d.get("function") or {}
        if fn.get("name"):
            call["function"]["name"] += fn["name"]
        if fn.get("arguments"):
            call["function"]["arguments"] += fn["arguments"]
    return [calls[i] for i in sorted(calls)]
