"""``ChatCall``: a validated chat request as the pipeline needs it, and the token ``Budget``.

The edge (``gateway.http``) builds a ``ChatCall`` from the wire; nothing below it sees HTTP. The
budget is resolved in exactly one place, ``Budget.resolve``: the client's ``max_tokens``, the
policy's cap on the answer and the thinking budget for the request's ``reasoning_effort``. Each
worker then keeps the total inside its model's context.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from gateway.worker.protocol import ChatMessage

if TYPE_CHECKING:
    from gateway.policy.schema import Policy

ReasoningEffort = Literal["none", "low", "medium", "high"]

DEFAULT_TEMPERATURE = 1.0
"""OpenAI's default when a request does not say (the edge and every worker path use this one)."""


def new_request_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


@dataclass(frozen=True)
class ChatCall:
    """A validated chat request. ``extra`` holds the OpenAI fields the gateway does not enforce."""

    messages: list[ChatMessage]
    max_tokens: int | None = None
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0
    reasoning_effort: ReasoningEffort | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    api_key_id: str | None = None
    request_id: str = field(default_factory=new_request_id)
    # Operator overrides: honoured only when ``admin`` (the edge checked the admin key).
    admin: bool = False
    force_domain: str | None = None
    policy_off: bool = False

    @property
    def rules_off(self) -> bool:
        """The operator's ``x-stopgate-policy: off``: keep the budget, disable every stopping rule."""
        return self.admin and self.policy_off

    @property
    def last_user_text(self) -> str:
        user = [m.content or "" for m in self.messages if m.role == "user"]
        return user[-1] if user else ""


@dataclass(frozen=True)
class Budget:
    """Token budget of one request. ``total`` (both phases) is what the worker is asked for.

    ``answer`` caps answer tokens (the policy's ``max_tokens``); ``thinking`` is the thinking budget
    (None: only ``total - reserve`` bounds it); a forced end of thinking leaves ``reserve`` tokens.
    """

    total: int
    answer: int
    thinking: int | None = None
    reserve: int = 16

    @classmethod
    def resolve(
        cls,
        client_max_tokens: int | None,
        policy: Policy | None,
        *,
        default_max_tokens: int,
        effort: ReasoningEffort | None = None,
    ) -> Budget:
        answer = policy.max_tokens if policy is not None else default_max_tokens
        spec = policy.thinking if policy is not None else None
        thinking = spec.budget_for(effort) if spec is not None and effort != "none" else None
        reserve = spec.answer_reserve if spec is not None else cls.reserve
        ceiling = answer + (thinking or 0)
        total = min(client_max_tokens, ceiling) if client_max_tokens is not None else ceiling
        return cls(total=total, answer=min(answer, total), thinking=thinking, reserve=reserve)

    @property
    def thinking_cap(self) -> int:
        """The most thinking tokens allowed before the gateway ends the thinking (>= 1)."""
        room = max(1, self.total - self.reserve)
        return min(self.thinking, room) if self.thinking is not None else room

    def answer_room(self, used: int) -> int:
        """Answer tokens left after ``used`` thinking tokens (>= 1: a forced end leaves room)."""
        return max(1, min(self.answer, self.total - used))
