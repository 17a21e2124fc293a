"""The worker protocol: what the gateway needs from a model worker, local or remote.

A ``Worker`` turns chat messages into a ``TokenStream``: an async iterator of ``TokenEvent``s,
one per generated token, that can be cancelled at any time (client disconnect, policy stop).
Cancelling must stop the worker's compute for that request within one decode step.
``probe`` runs a short side generation on prefix + suffix (answer probes, Dynasor/DEER style).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Literal, Protocol, runtime_checkable

import msgspec

FinishReason = Literal["stop", "length", "cancelled"]


class ChatMessage(msgspec.Struct, frozen=True):
    role: str
    content: str


def message_dicts(messages: Iterable[ChatMessage]) -> list[dict[str, str]]:
    """``messages`` as OpenAI / chat-template dicts."""
    return [{"role": m.role, "content": m.content} for m in messages]


class SamplingParams(msgspec.Struct, frozen=True, kw_only=True):
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


class TokenEvent(msgspec.Struct, frozen=True):
    """One generated token: its id, the text it adds (may be empty mid multi-byte), its logprob."""

    index: int
    token_id: int
    text: str
    logprob: float
    entropy: float = 0.0


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
