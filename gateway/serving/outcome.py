"""What a running request hands out (``Delta``) and what it amounts to when it ends (``Outcome``).

A ``ChatRun`` yields ``Delta``s to the edge, which frames them (SSE chunks or one response); when
the run closes it produces exactly one ``Outcome``, which ``ChatService`` records once into
metrics, rate limits, the audit log and (for sampled requests) the autopilot's sample store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.policy.engine import ShadowHit


@dataclass(frozen=True, slots=True)
class Delta:
    """One piece of output: answer text, thinking text, the logprobs of the tokens it carries, tool calls."""

    content: str = ""
    reasoning: str = ""
    logprobs: tuple[dict[str, Any], ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one request ended, counted once.

    ``completion_tokens`` counts both phases (OpenAI semantics), thinking tokens and the tokens of
    a forced end-of-thinking marker in ``reasoning_tokens`` too. ``finish_reason`` is None when no
    finish was sent (error, client gone). ``stop_rule``/``thinking_stop_rule`` name what ended the
    answer / the thinking early (``thinking_stop_rule`` is ``max_tokens`` when the thinking budget did).
    """

    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    max_tokens: int
    finish_reason: str | None
    stop_rule: str | None
    thinking_stop_rule: str | None
    shadow: ShadowHit | None
    tool_call: bool
    client_disconnected: bool = False
    error: BaseException | None = None
    # Quality sampling: the full generation's length and whether its answer agreed with the one sent.
    full_completion_tokens: int | None = None
    answer_agreed: bool | None = None
    text: str | None = None  # the answer sent, kept only when the policy audits text
