"""What the local worker does with the OpenAI fields the gateway hands on as sent (``SamplingParams.extra``).

Three kinds of field:
- done here: ``frequency_penalty``, ``presence_penalty`` and ``logit_bias`` (cheap logit edits in
  the batched step, only for rows that ask), ``tools`` when the chat template renders them,
  ``tool_choice`` ``auto``/``none``, ``response_format`` ``text``, ``n`` 1;
- refused with a 400 naming the field (``UnsupportedParameter``): what would change the output
  in a way this worker cannot honour — ``tools`` on a template without tool support, a forced
  ``tool_choice``, JSON ``response_format``, ``n`` > 1, vendor sampling knobs (``top_k``...);
- accepted, no effect on the tokens: metadata (``user``, ``metadata``, ``store``...) and fields
  nobody here knows (they were meant for some engine; refusing them would break clients that
  send them to every backend).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import UnsupportedParameter

REFUSED = {
    "n": "this worker generates one choice per request",
    "functions": "legacy function calling is not supported; send 'tools'",
    "function_call": "legacy function calling is not supported; send 'tool_choice'",
    "audio": "this model has no audio output",
    "modalities": "this model writes text only",
    "prediction": "predicted outputs are not supported by the local worker",
    "web_search_options": "the local worker cannot search the web",
    "top_k": "top_k is not supported by the local worker",
    "min_p": "min_p is not supported by the local worker",
    "repetition_penalty": "repetition_penalty is not supported by the local worker; use frequency_penalty",
    "guided_json": "guided decoding is not supported by the local worker",
    "guided_regex": "guided decoding is not supported by the local worker",
    "guided_choice": "guided decoding is not supported by the local worker",
    "guided_grammar": "guided decoding is not supported by the local worker",
}
"""Fields that change what is generated and that this worker cannot do, with the reason given."""


@dataclass(frozen=True)
class LocalOptions:
    """The pass-through fields as the local worker applies them."""

    tools: list[dict[str, Any]] | None = None  # handed to the chat template
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)

    @property
    def edits_logits(self) -> bool:
        return bool(self.frequency_penalty or self.presence_penalty or self.logit_bias)


def local_options(extra: dict[str, Any], *, template_has_tools: bool, vocab_size: int) -> LocalOptions:
    """Check ``extra`` against what this worker can do; raises ``UnsupportedParameter`` naming the field."""
    for name, reason in REFUSED.items():
        value = extra.get(name)
        if value is None or (name == "n" and value == 1):
            continue
        raise UnsupportedParameter(f"'{name}' is not supported here: {reason}.", param=name)
    _check_response_format(extra.get("response_format"))
    tools = _tools(extra.get("tools"), extra.get("tool_choice"), template_has_tools)
    return LocalOptions(
        tools=tools,
        frequency_penalty=_penalty(extra, "frequency_penalty"),
        presence_penalty=_penalty(extra, "presence_penalty"),
        logit_bias=_logit_bias(extra.get("logit_bias"), vocab_size),
    )


def _check_response_format(value: Any) -> None:
    if value is None:
        return
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return
    raise UnsupportedParameter(
        f"response_format {kind!r} is not supported by the local worker (no constrained decoding); "
        "only {'type': 'text'}.",
        param="response_format",
    )


def _tools(tools: Any, choice: Any, template_has_tools: bool) -> list[dict[str, Any]] | None:
    if choice not in (None, "auto", "none"):
        # "required" or a named function: a forced call needs constrained decoding we do not have.
        raise UnsupportedParameter(
            "tool_choice may only be 'auto' or 'none' on the local worker (a call cannot be forced).",
            param="tool_choice",
        )
    if not tools or choice == "none":
        return None  # with tool_choice none the model must not call them: rendering none is honest
    if not template_has_tools:
        raise UnsupportedParameter(
            "This model's chat template has no tool support, so 'tools' cannot be given to it "
            "(send them to an engine with a tool-calling model).",
            param="tools",
        )
    return [dict(t) for t in tools]


def _penalty(extra: dict[str, Any], name: str) -> float:
    value = extra.get(name)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not -2.0 <= value <= 2.0:
        raise UnsupportedParameter(f"'{name}' must be a number between -2 and 2.", param=name)
    return float(value)


def _logit_bias(value: Any, vocab_size: int) -> dict[int, float]:
    if not value:
        return {}
    if not isinstance(value, dict):
        raise UnsupportedParameter("'logit_bias' must map token ids to biases.", param="logit_bias")
    out: dict[int, float] = {}
    for key, bias in value.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise UnsupportedParameter(f"logit_bias key {key!r} is not a token id.", param="logit_bias") from None
        if not 0 <= token < vocab_size:
            raise UnsupportedParameter(f"logit_bias token {token} is outside the vocabulary.", param="logit_bias")
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not math.isfinite(bias):
            raise UnsupportedParameter(f"logit_bias for {token} must be a number.", param="logit_bias")
        if not -100 <= bias <= 100:
            raise UnsupportedParameter("logit_bias values must be between -100 and 100.", param="logit_bias")
        out[token] = float(bias)
    return out
