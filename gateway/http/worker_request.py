"""A request to the worker API (``stopgate worker``): the OpenAI fields the worker reads, and the rest.

``parse_worker_request`` refuses any malformed body with a ``RequestError`` (a 400, never a 500) and
hands back the fields the worker does not read itself (tools, penalties, ...) for the local
worker's ``SamplingParams.extra``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import RequestError
from gateway.http.decoding import decode_json
from gateway.worker.protocol import ChatMessage, ThinkingMode


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


def parse_worker_request(body: bytes) -> tuple[WorkerRequest, dict[str, Any]]:
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


def chat_messages(raw: list[dict[str, Any]]) -> list[ChatMessage]:
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
