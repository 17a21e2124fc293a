"""Parsing OpenAI chat requests: tolerant of unknown fields, strict on meaning."""

from __future__ import annotations

import json

import pytest

from gateway.errors import RequestError
from gateway.http.protocol import parse_chat_request


def body(**fields: object) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}).encode()


def test_unknown_fields_are_ignored_and_reported() -> None:
    """Fields we do not know are returned for logging, not rejected."""
    req, unknown = parse_chat_request(body(frequency_penalty=0.5, logit_bias={}))
    assert req.model == "m"
    assert unknown == ["frequency_penalty", "logit_bias"]


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
