"""RemoteWorker reads OpenAI stream chunks into TokenEvents: one per logprobs entry, ids when given."""

from __future__ import annotations

import zlib

from gateway.worker.protocol import TokenEvent
from gateway.worker.remote import _events


def test_one_token_chunk_gives_its_id_text_and_logprob() -> None:
    """A ``token_id:N`` token is read as id N; the chunk's text and logprob ride on the event."""
    choice = {"delta": {"content": " Paris"}, "logprobs": {"content": [{"token": "token_id:42", "logprob": -0.25}]}}
    assert _events(choice, 7) == [TokenEvent(7, 42, " Paris", -0.25)]


def test_several_tokens_in_one_chunk_give_one_event_each_with_the_text_on_the_last() -> None:
    """Indices count up from ``start``; a token without an id is hashed; a missing logprob reads 0."""
    content = [{"token": "token_id:1", "logprob": -1.0}, {"token": "b", "logprob": None}]
    choice = {"delta": {"content": "ab"}, "logprobs": {"content": content}}
    assert _events(choice, 3) == [TokenEvent(3, 1, "", -1.0), TokenEvent(4, zlib.crc32(b"b"), "ab", 0.0)]


def test_chunk_without_logprobs_gives_one_event_per_text_and_none_for_no_text() -> None:
    """Text alone becomes one event (id from its hash); an empty delta none."""
    assert _events({"delta": {"content": "hi"}}, 0) == [TokenEvent(0, zlib.crc32(b"hi"), "hi", 0.0)]
    assert _events({"delta": {}}, 0) == []
