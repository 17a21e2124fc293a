"""The worker protocol: what the gateway needs from a model worker, local or remote.

A ``Worker`` turns chat messages into a ``TokenStream``: an async iterator of ``TokenEvent``s,
one per generated token, that can be cancelled at any time (client disconnect, policy stop).
Cancelling must stop the worker's compute for that request within one decode step.
``probe`` runs a short side generation on prefix + suffix (answer probes, Dynasor/DEER style).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

FinishReason = Literal["stop", "length", "cancelled", "tool_calls"]
Phase = Literal["thinking", "answer"]
ThinkingMode = Literal["on", "off", "model"]
"""``on``: open a thinking block even if the template does not; ``off``: no thinking; ``model``: as it does."""


class ChatMessage(msgspec.Struct, frozen=True):
    """One chat turn as the worker needs it. ``content`` is None on an assistant tool-call turn."""

    role: str
    content: str | None = None
    name: str | None = None
    tool_calls: tuple[dict[str, Any], ...] | None = None  # OpenAI shape, passed through as sent
    tool_call_id: str | None = None


def message_dicts(messages: Iterable[ChatMessage]) -> list[dict[str, Any]]:
    """``messages`` as OpenAI / chat-template dicts (fields that are unset are left out)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.name is not None:
            d["name"] = m.name
        if m.tool_calls is not None:
            d["tool_calls"] = [dict(c) for c in m.tool_calls]
        if m.tool_call_id is not None:
            d["tool_call_id"] = m.tool_call_id
        out.append(d)
    return out


class SamplingParams(msgspec.Struct, frozen=True, kw_only=True):
    """How to generate. ``max_tokens`` is already inside the context and covers both phases.

    ``top_logprobs``: alternatives to report per token (0: only the chosen token's logprob).
    ``thinking``: the policy's thinking mode for this request. ``extra``: OpenAI request fields the
    gateway does not enforce (tools, tool_choice, response_format, penalties, logit_bias, user,
    metadata, ...), forwarded as sent by a remote worker; the local worker refuses what it cannot do.
    """

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    top_logprobs: int = 0
    thinking: ThinkingMode = "model"
    extra: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


class TopLogprob(msgspec.Struct, frozen=True, array_like=True):
    """One alternative for a position: its text and logprob."""

    token: str
    logprob: float


class TokenEvent(msgspec.Struct, frozen=True):
    """One generated token: its id, the text it adds (may be empty mid multi-byte), its logprob.

    ``phase`` says whether the token belongs to the thinking block or the answer (marker tokens
    themselves are ``thinking`` with empty ``text``: they count, but are never shown).
    ``tool_calls`` carries an engine's ``delta.tool_calls`` entries as sent (text is then empty).
    """

    index: int
    token_id: int
    text: str
    logprob: float
    entropy: float = 0.0
    phase: Phase = "answer"
    top_logprobs: tuple[TopLogprob, ...] = ()
    tool_calls: tuple[dict[str, Any], ...] | None = None


class ProbeResult(msgspec.Struct, frozen=True):
    """A short greedy side generation: its text and the mean probability of its tokens."""

    text: str
    tokens: int
    confidence: float

    @classmethod
    def from_logprobs(cls, text: str, logprobs: Sequence[float]) -> ProbeResult:
        """Confidence = exp(mean logprob) of the probe's tokens; 0 for no tokens."""
        confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else 0.0
        return cls(text, len(logprobs), confidence)


@runtime_checkable
class TokenStream(Protocol):
    """A running generation. Iterate for tokens; ``finish_reason`` is set once iteration ends."""

    prompt_tokens: int
    finish_reason: FinishReason | None

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens the engine took from its prefix cache instead of computing (0: none, or not
        reported); known once the first token is out."""

    def __aiter__(self) -> AsyncIterator[TokenEvent]: ...

    def cancel(self) -> None:
        """Stop generating; idempotent, safe from any task. Iteration then ends."""


@runtime_checkable
class Worker(Protocol):
    model_id: str
    context_length: int

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def ready(self) -> bool: ...

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch slot."""

    @property
    def active(self) -> int:
        """Requests currently decoding."""

    @property
    def tokens_generated(self) -> int:
        """Tokens decoded since start (all requests, probes included)."""

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream: ...

    async def probe(self, stream: TokenStream, suffix: str, max_tokens: int) -> ProbeResult:
        """Greedy continuation of ``stream``'s prompt + generated tokens + ``suffix``."""

    async def end_thinking(self, stream: TokenStream, text: str) -> int:
        """Append ``text`` (the end-of-thinking marker) to the running generation of ``stream``.

        The stream's next events continue after it, in the answer phase. The appended tokens are
        not events; the return value is how many tokens were appended (they count as thinking).
        Local: tokens appended to the row. Remote: cancel upstream, continue the assistant message.
        """
