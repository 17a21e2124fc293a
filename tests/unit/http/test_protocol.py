"""Parsing OpenAI chat requests: tolerant of unknown fields, strict on meaning."""

from __future__ import annotations

import json

import pytest

from gateway.errors import RequestError
from gateway.http.protocol import ChunkFrames, chunk, parse_chat_request
from gateway.http.sse import frame


def body(**fields: object) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}).encode()


def test_fields_we_do_not_enforce_are_handed_on_as_sent() -> None:
    """Pass-through OpenAI fields and unknown fields come back verbatim for the worker; enforced ones do not."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    req, extra = parse_chat_request(
        body(frequency_penalty=0.5, logit_bias={"7": 1.0}, tools=tools, vendor_knob={"a": 1}, temperature=0)
    )
    assert req.model == "m"
    assert extra == {"frequency_penalty": 0.5, "logit_bias": {"7": 1.0}, "tools": tools, "vendor_knob": {"a": 1}}


def test_an_agent_turn_with_null_content_and_a_tool_result_parses() -> None:
    """An assistant tool-call turn with content null and a role tool result are valid messages."""
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    req, _ = parse_chat_request(json.dumps({"model": "m", "messages": messages}).encode())
    assert req.messages[1].text() is None and req.messages[1].tool_calls[0].function.name == "w"
    assert req.messages[2].tool_call_id == "c1"


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "user", "content": None}, "messages[0].content"),
        ({"role": "tool", "content": "x"}, "messages[0].tool_call_id"),
    ],
)
def test_null_content_outside_a_tool_call_turn_is_a_400_naming_the_message(message: dict, param: str) -> None:
    """content null is allowed only with tool_calls; a tool result needs its call id."""
    raw = {"model": "m", "messages": [message, {"role": "user", "content": "hi"}]}
    with pytest.raises(RequestError) as err:
        parse_chat_request(json.dumps(raw).encode())
    assert err.value.param == param


def test_top_logprobs_needs_logprobs_and_a_range() -> None:
    """top_logprobs without logprobs, or above 20, is refused naming top_logprobs."""
    for fields in ({"top_logprobs": 2}, {"logprobs": True, "top_logprobs": 21}):
        with pytest.raises(RequestError) as err:
            parse_chat_request(body(**fields))
        assert err.value.param == "top_logprobs"


def test_content_parts_are_joined_as_text() -> None:
    """Content given as OpenAI text parts reads as their text."""
    raw = json.dumps(
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
        }
    )
    req, _ = parse_chat_request(raw.encode())
    assert req.messages[0].text() == "ab"


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    """max_completion_tokens, the newer name, takes precedence."""
    req, _ = parse_chat_request(body(max_tokens=50, max_completion_tokens=7))
    assert req.requested_max_tokens == 7


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (body(max_tokens=0), "max_tokens"),
        (body(temperature=3), "temperature"),
        (body(top_p=0), "top_p"),
        (body(n=2), "n"),
        (body(stop=["a", ""]), "stop"),
        (json.dumps({"model": "m", "messages": []}).encode(), "messages"),
        (json.dumps({"model": "m", "messages": [{"role": "system", "content": "x"}]}).encode(), "messages"),
        (body(seed="abc"), "seed"),
    ],
)
def test_invalid_values_name_their_param(raw: bytes, param: str) -> None:
    """Out-of-range or mistyped values raise RequestError naming the parameter."""
    with pytest.raises(RequestError) as caught:
        parse_chat_request(raw)
    assert caught.value.param == param


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b"null", b'"text"'])
def test_non_object_bodies_are_request_errors(raw: bytes) -> None:
    """Bodies that are not a JSON object are client errors, not crashes."""
    with pytest.raises(RequestError):
        parse_chat_request(raw)


@pytest.mark.parametrize(
    ("delta", "logprobs"),
    [
        ({"role": "assistant", "content": ""}, None),
        ({"content": ' say "hi"\n\u00e9'}, None),
        ({"reasoning_content": "hmm"}, None),
        ({"content": "a"}, [{"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": []}]),
        ({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}, None),
    ],
)
def test_stream_frames_are_the_generic_frames_byte_for_byte(delta: dict, logprobs: list | None) -> None:
    """A stream's pre-encoded chunk frames equal ``frame(chunk(...))`` exactly, so the wire is unchanged."""
    rid, created, model = 'chatcmpl-x"y', 1700000000, "org/model"
    generic = frame(chunk(rid, created, model, delta, logprobs=logprobs))
    assert ChunkFrames(rid, created, model).delta(delta, logprobs) == generic
