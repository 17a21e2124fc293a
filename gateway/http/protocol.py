"""OpenAI wire types for ``/v1/chat/completions`` and their parsing.

Tolerant on the wire: unknown fields are ignored (and reported back so the controller logs
them). Strict on meaning: wrong types, empty message lists and out-of-range numbers are 400s
naming the offending ``param``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from gateway.errors import RequestError

Role = Literal["system", "developer", "user", "assistant", "tool"]


class ContentPart(msgspec.Struct, frozen=True):
    type: str
    text: str | None = None


class WireMessage(msgspec.Struct, frozen=True):
    role: Role
    content: str | list[ContentPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
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
    user: str | None = None

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


KNOWN_FIELDS = frozenset(ChatCompletionRequest.__struct_fields__)


def parse_chat_request(body: bytes) -> tuple[ChatCompletionRequest, list[str]]:
    """Decode and check a chat request; returns it and the names of ignored unknown fields."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise RequestError(f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise RequestError("Request body must be a JSON object.")
    unknown = sorted(k for k in raw if k not in KNOWN_FIELDS)
    try:
        req = msgspec.convert(raw, ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        raise RequestError(f"Invalid request: {exc}", param=_param_of(str(exc))) from exc
    _check(req)
    return req, unknown


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
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if stopgate is not None:
        body["stopgate"] = stopgate
    return body


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def usage_chunk(rid: str, created: int, model: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The last chunk of a stream with ``stream_options.include_usage``: no choices, the usage."""
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }
