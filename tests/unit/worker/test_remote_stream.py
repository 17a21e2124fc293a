"""Reading an engine's SSE response: ``data:`` payloads however the reads cut them, JSON as json.loads reads it."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.worker.remote_stream import decode_chunk, sse_data


def response(*pieces: bytes) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    return httpx.Response(200, content=body())


async def payloads(*pieces: bytes) -> list[bytes]:
    return [d async for d in sse_data(response(*pieces))]


async def test_payloads_come_whole_however_the_reads_cut_the_lines() -> None:
    """Lines split across reads, several lines in one read, and a last line without newline are read once each."""
    got = await payloads(b'data: {"a":', b'1}\n\ndata: {"b":2}\n\nda', b"ta: [DONE]")
    assert got == [b'{"a":1}', b'{"b":2}', b"[DONE]"]


async def test_crlf_and_cr_line_ends_and_other_fields_are_handled() -> None:
    """CRLF (also cut between its two bytes) and a lone CR end lines; comments and other fields are skipped."""
    got = await payloads(b': ping\r\nevent: x\r\ndata:{"a":1}\r', b"\n\r\ndata: 2\rdata: 3\n")
    assert got == [b'{"a":1}', b"2", b"3"]


def test_chunks_decode_like_the_standard_parser_also_with_non_finite_numbers() -> None:
    """Plain JSON decodes to dicts; ``NaN``/``-Infinity`` (Python's json.dumps) still decode; garbage still fails."""
    assert decode_chunk(b'{"choices":[{"index":0,"delta":{"content":"\\u00e9"}}]}') == {
        "choices": [{"index": 0, "delta": {"content": "\u00e9"}}]
    }
    lp = decode_chunk(b'{"logprob":-Infinity,"x":NaN}')
    assert lp["logprob"] == -math.inf and math.isnan(lp["x"])
    with pytest.raises(ValueError):
        decode_chunk(b"{nope")


async def test_a_compressed_event_stream_is_decoded_first() -> None:
    """A gzip-encoded response (a proxy in between) is read through its decoder."""
    import gzip

    body = gzip.compress(b'data: {"a":1}\n\ndata: [DONE]\n\n')
    r = httpx.Response(200, headers={"content-encoding": "gzip"}, content=body)
    assert [d async for d in sse_data(r)] == [b'{"a":1}', b"[DONE]"]
