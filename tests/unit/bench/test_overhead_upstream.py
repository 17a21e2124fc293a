"""The overhead bench's synthetic upstream and stream reader, and the remote worker on top of it."""

from __future__ import annotations

import asyncio

import httpx

from gateway.bench.overhead import _compare
from gateway.bench.streams import Sample, chat_body, stream_once
from gateway.bench.upstream import Upstream
from gateway.worker.protocol import ChatMessage, SamplingParams
from gateway.worker.remote import RemoteWorker


async def start_upstream() -> tuple[asyncio.AbstractServer, str]:
    server = await asyncio.start_server(Upstream().handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def test_stream_once_reads_ttft_usage_tokens_and_gaps() -> None:
    """A streamed request to the synthetic upstream: TTFT, the usage token count, a gap per later token."""
    server, url = await start_upstream()
    try:
        async with httpx.AsyncClient() as client:
            sample = await stream_once(client, url, chat_body("synthetic", 0, 40), {}, gaps=True)
    finally:
        server.close()
    assert sample.error is None and sample.ttft_s is not None
    assert sample.tokens == 40
    assert 0 < len(sample.gaps_s) <= 42


async def test_remote_worker_counts_exactly_the_upstream_tokens() -> None:
    """The remote worker on the synthetic upstream: one event per token, ids from token_id:N, prompt tokens at once."""
    server, url = await start_upstream()
    worker = RemoteWorker([url], model="synthetic", health_interval_s=60)
    try:
        await worker.start()
        stream = await worker.generate([ChatMessage("user", "hi")], SamplingParams(max_tokens=33))
        events = [e async for e in stream]
    finally:
        await worker.close()
        server.close()
    assert len(events) == 33 and stream.engine_completion_tokens == 33
    assert all(1000 <= e.token_id < 1100 for e in events)
    assert stream.prompt_tokens > 0 and stream.finish_reason == "length"


def test_compare_reports_ttft_added_and_throughput_ratio() -> None:
    """TTFT added is the gateway's percentile minus the direct one; the ratio is tokens/s over tokens/s."""
    direct = [([Sample(ttft_s=0.010, tokens=100)], 1.0)]
    through = [([Sample(ttft_s=0.014, tokens=100)], 1.25)]
    out = _compare(direct, through)
    assert out["ttft_added_p50_ms"] == 4.0
    assert out["throughput_ratio"] == 0.8


async def test_ttft_pairs_take_one_token_requests_in_turn_and_report_the_difference() -> None:
    """TTFT pairs: each pair is one request to each side; p50s, their difference and the paired mean come back."""
    from gateway.bench.overhead import _ttft_pairs

    (a, url_a), (b, url_b) = await start_upstream(), await start_upstream()
    try:
        got = await _ttft_pairs(url_a, url_b, {}, "synthetic", 5)
    finally:
        a.close()
        b.close()
    assert got["pairs"] == 5
    assert got["direct_p50_ms"] > 0 and got["gateway_p50_ms"] > 0
    assert got["ttft_added_p50_ms"] == round(got["gateway_p50_ms"] - got["direct_p50_ms"], 2)
    assert got["added_mean_ms"] is not None and got["added_mean_se_ms"] is not None
