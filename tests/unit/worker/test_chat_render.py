"""Chat rendering: tool-call turns folded for templates without them, tools and thinking switches."""

from __future__ import annotations

from typing import Any

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from gateway.errors import RequestError
from gateway.worker.chat_render import ChatRenderer, TemplateFeatures, fold_tool_turns
from gateway.worker.protocol import ChatMessage

PLAIN = (  # SmolLM2's shape: content concatenated, no tools, no enable_thinking
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
QWEN_LIKE = (
    "{% if tools %}TOOLS:{{ tools | length }}\n{% endif %}"
    "{% for m in messages %}{{ m['role'] }}:{{ m['content'] or '' }}"
    "{% if m.tool_calls %}[calls {{ m.tool_calls | length }}]{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% if enable_thinking is defined and not enable_thinking %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
AGENT = [
    ChatMessage("user", "Weather in Paris?"),
    ChatMessage("assistant", None, tool_calls=(CALL,)),
    ChatMessage("tool", "18 C", tool_call_id="call_1"),
]


def tokenizer(template: str) -> Any:
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()))
    tok.chat_template = template
    return tok


def test_features_are_read_from_the_template_source() -> None:
    """A plain template has no tools/tool_calls/enable_thinking; a Qwen-like one has all three."""
    assert TemplateFeatures.of(PLAIN) == TemplateFeatures(False, False, False)
    assert TemplateFeatures.of(QWEN_LIKE) == TemplateFeatures(True, True, True)


def test_tool_turns_fold_into_text_for_a_template_without_them() -> None:
    """The call becomes assistant text naming the function; the result a user turn naming it; no None content."""
    text = ChatRenderer(tokenizer(PLAIN)).render(AGENT).text
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in text
    assert '<|im_start|>user\n<tool_response name="get_weather">\n18 C\n</tool_response>' in text


def test_fold_keeps_plain_turns_and_assistant_text() -> None:
    """Turns without tool calls pass unchanged; content next to calls stays before them."""
    turns = fold_tool_turns([ChatMessage("assistant", "Let me check.", tool_calls=(CALL,))])
    assert turns[0].content is not None and turns[0].content.startswith("Let me check.\n<tool_call>")
    assert fold_tool_turns(AGENT[:1]) == AGENT[:1]


def test_a_tool_aware_template_gets_the_turns_and_tools_as_sent() -> None:
    """Tool calls and tools reach a template that renders them; nothing is folded."""
    text = ChatRenderer(tokenizer(QWEN_LIKE)).render(AGENT, tools=[{"type": "function"}]).text
    assert text.startswith("TOOLS:1\n") and "[calls 1]" in text and "tool:18 C" in text


def test_thinking_on_opens_a_block_the_template_does_not() -> None:
    """thinking on appends the start marker after the generation prompt and reports the block open."""
    rendered = ChatRenderer(tokenizer(PLAIN)).render(AGENT[:1], thinking="on")
    assert rendered.text.endswith("<|im_start|>assistant\n<think>\n") and rendered.thinking
    plain = ChatRenderer(tokenizer(PLAIN)).render(AGENT[:1])
    assert not plain.text.endswith("<think>\n") and not plain.thinking


def test_thinking_off_passes_enable_thinking_false() -> None:
    """A template with enable_thinking gets False for off: its closed empty block is not open thinking."""
    rendered = ChatRenderer(tokenizer(QWEN_LIKE)).render(AGENT[:1], thinking="off")
    assert rendered.text.endswith("<think>\n\n</think>\n\n") and not rendered.thinking


def test_a_template_error_is_a_400_on_messages() -> None:
    """A template that raises on these messages gives a RequestError naming messages, not a 500."""
    bad = tokenizer("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(RequestError) as err:
        ChatRenderer(bad).render(AGENT[:1])
    assert err.value.param == "messages"
