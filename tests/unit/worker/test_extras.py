"""The local worker's handling of OpenAI pass-through fields: done, refused with the field named, or accepted."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import UnsupportedParameter
from gateway.worker.extras import local_options

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def options(extra: dict[str, Any], tools: bool = False) -> Any:
    return local_options(extra, template_has_tools=tools, vocab_size=1000)


def test_metadata_and_unknown_fields_are_accepted_without_effect() -> None:
    """user, metadata and fields nobody here knows change nothing and raise nothing."""
    got = options({"user": "u1", "metadata": {"a": "b"}, "some_engine_flag": True, "n": 1})
    assert got.tools is None and not got.edits_logits


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": TOOLS}, "tools"),
        ({"tools": TOOLS, "tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format"),
        ({"n": 2}, "n"),
        ({"top_k": 5}, "top_k"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"logit_bias": {"5000": 1}}, "logit_bias"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_the_field(extra: dict[str, Any], param: str) -> None:
    """Each field the worker cannot do raises UnsupportedParameter with that field as param."""
    with pytest.raises(UnsupportedParameter) as err:
        options(extra)
    assert err.value.param == param


def test_tools_go_to_a_template_that_renders_them() -> None:
    """With a tool-aware template, tools (tool_choice auto) are handed on."""
    assert options({"tools": TOOLS, "tool_choice": "auto"}, tools=True).tools == TOOLS


def test_tool_choice_none_renders_no_tools_even_without_template_support() -> None:
    """tool_choice none: the model may not call tools, so none are rendered and nothing is refused."""
    assert options({"tools": TOOLS, "tool_choice": "none"}).tools is None


def test_penalties_and_logit_bias_are_parsed_for_the_step() -> None:
    """Penalties and a logit_bias keyed by token-id strings become logit edits."""
    got = options({"frequency_penalty": 0.5, "presence_penalty": -1, "logit_bias": {"7": -100}})
    assert (got.frequency_penalty, got.presence_penalty, got.logit_bias) == (0.5, -1.0, {7: -100.0})
    assert got.edits_logits


def test_text_response_format_is_accepted() -> None:
    """response_format text is what the worker does anyway."""
    assert not options({"response_format": {"type": "text"}}).edits_logits
