"""Chat messages to prompt text with the model's chat template: tools, tool-call turns, thinking.

What a template can do is read from its source once (``TemplateFeatures``): whether it renders
``tools``, assistant ``tool_calls`` and ``role: tool`` turns, and whether it takes
``enable_thinking`` (Qwen3 style). What it cannot render is folded into plain text turns, so an
agent conversation never breaks the template (SmolLM2's concatenates ``content`` and would fail
on the ``None`` of a tool-call turn):
- an assistant tool-call turn becomes assistant text, each call as
  ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` after any content;
- a tool result becomes a user turn ``<tool_response>...</tool_response>`` (named by its call id).
``thinking: on`` opens a thinking block after the generation prompt (the start marker), unless
the template already did; ``off`` passes ``enable_thinking=False`` to templates that take it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import RequestError
from gateway.worker.phases import ThinkMarkers
from gateway.worker.protocol import ChatMessage, ThinkingMode, message_dicts


@dataclass(frozen=True)
class TemplateFeatures:
    tools: bool  # renders a ``tools`` list
    tool_calls: bool  # renders assistant ``tool_calls`` (and ``role: tool`` turns with them)
    enable_thinking: bool  # takes Qwen3's ``enable_thinking`` switch

    @classmethod
    def of(cls, template: str | None) -> TemplateFeatures:
        source = template or ""
        return cls(
            tools="tools" in source.replace("tool_calls", ""),
            tool_calls="tool_calls" in source,
            enable_thinking="enable_thinking" in source,
        )


@dataclass(frozen=True)
class Rendered:
    """The prompt text, and whether it ends inside an open thinking block."""

    text: str
    thinking: bool


class ChatRenderer:
    def __init__(self, tokenizer: Any, markers: ThinkMarkers | None = None) -> None:
        self._tokenizer = tokenizer
        self.markers = markers or ThinkMarkers()
        self.features = TemplateFeatures.of(getattr(tokenizer, "chat_template", None))

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: list[dict[str, Any]] | None = None,
        thinking: ThinkingMode = "model",
        continue_final: bool = False,
        add_generation_prompt: bool = True,
    ) -> Rendered:
        turns = message_dicts(messages if self.features.tool_calls else fold_tool_turns(messages))
        for turn in turns:
            if turn.get("content") is None and not turn.get("tool_calls"):
                turn["content"] = ""
        kwargs: dict[str, Any] = {}
        if tools and self.features.tools:
            kwargs["tools"] = tools
        if self.features.enable_thinking and thinking != "model":
            kwargs["enable_thinking"] = thinking == "on"
        try:
            text = str(
                self._tokenizer.apply_chat_template(
                    turns,
                    add_generation_prompt=add_generation_prompt and not continue_final,
                    continue_final_message=continue_final,
                    tokenize=False,
                    **kwargs,
                )
            )
        except Exception as exc:  # jinja's TemplateError, or a TypeError inside the template
            raise RequestError(
                f"The model's chat template cannot render these messages: {exc}", param="messages"
            ) from exc
        if thinking == "on" and not continue_final and not self.opens_thinking(text):
            text += self.markers.start + "\n"
        return Rendered(text, thinking != "off" and self.opens_thinking(text))

    def opens_thinking(self, text: str) -> bool:
        """True when ``text`` ends inside a thinking block (a start marker with no end after it)."""
        start = text.rfind(self.markers.start)
        return start >= 0 and text.find(self.markers.end, start) < 0


def fold_tool_turns(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Tool-call turns as plain text turns, for templates that do not render them."""
    names = {
        str(call.get("id")): str((call.get("function") or {}).get("name", ""))
        for m in messages
        for call in m.tool_calls or ()
    }
    out: list[ChatMessage] = []
    for m in messages:
        if m.tool_calls:
            calls = "\n".join(_call_text(c) for c in m.tool_calls)
            text = f"{m.content}\n{calls}" if m.content else calls
            out.append(ChatMessage(m.role, text, name=m.name))
        elif m.role == "tool":
            who = names.get(str(m.tool_call_id), "") or m.name or ""
            head = f"<tool_response name={json.dumps(who)}>" if who else "<tool_response>"
            out.append(ChatMessage("user", f"{head}\n{m.content or ''}\n</tool_response>"))
        else:
            out.append(m)
    return out


def _call_text(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    args = fn.get("arguments", "")
    try:
        parsed = json.loads(args) if isinstance(args, str) else args
    except ValueError:
        parsed = args
    return "<tool_call>\n" + json.dumps({"name": fn.get("name", ""), "arguments": parsed}) + "\n</tool_call>"
