"""The worker API's responses: OpenAI/vLLM chunk shapes (reasoning, logprobs, tool calls), and any failure
after the first byte ends it with one error frame and [DONE]."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from gateway.errors import WorkerError
from gateway.http.worker_response import ResponseShape, sse_events
from gateway.worker.protocol import TokenEvent, TopLogprob


class BreakingStream:
    """A token stream that yields one token, then fails with ``exc``."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.cancelled = False
        self.finish_reason = None
        self.prompt_tokens = 3
        self.cached_tokens = 0

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        yield TokenEvent(0, 7, "Hi", -0.1, 0.5)
        raise self.exc

    def cancel(self) -> None:
        self.cancelled = True


async def frames(exc: Exception) -> tuple[list[str], BreakingStream]:
    stream = BreakingStream(exc)
    shape = ResponseShape("cmpl-1", "m", chat=True, logprobs=False, token_ids=False)
    out = [chunk.decode() async for chunk in sse_events(stream, shape, include_usage=False)]
    return out, stream


async def test_an_unexpected_failure_becomes_an_internal_error_frame() -> None:
    """A RuntimeError mid-stream: the token, then a server_error frame and [DONE]; the stream is cancelled."""
    out, stream = await frames(RuntimeError("boom"))
    assert '"role":"assistant"' in out[0] and '"Hi"' in out[1]
    error = json.loads(out[-2].removeprefix("data: "))["error"]
    assert error["type"] == "server_error" and "boom" not in error["message"]
    assert out[-1] == "data: [DONE]\n\n" and stream.cancelled


async def test_a_stopgate_error_keeps_its_own_mapping() -> None:
    """A WorkerError mid-stream is framed through the error map, not as a generic internal error."""
    out, _ = await frames(WorkerError("worker gone"))
    error = json.loads(out[-2].removeprefix("data: "))["error"]
    assert "worker gone" in error["message"] and out[-1] == "data: [DONE]\n\n"


class ListStream:
    """A finished token stream over fixed events."""

    def __init__(self, events: list[TokenEvent], finish: str = "stop") -> None:
        self.events, self.finish_reason, self.prompt_tokens = events, finish, 4
        self.cached_tokens = 2

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        for e in self.events:
            yield e

    def cancel(self) -> None:
        pass


async def chunks(events: list[TokenEvent], **shape: bool) -> list[dict]:
    s = ResponseShape(
        "c", "m", chat=True, logprobs=shape.get("logprobs", False), token_ids=shape.get("token_ids", False)
    )
    out = [f.decode() async for f in sse_events(ListStream(events), s, include_usage=True)]
    return [json.loads(f.removeprefix("data: ")) for f in out[:-1]]


async def test_thinking_streams_as_reasoning_content_and_usage_counts_it() -> None:
    """Thinking events are delta.reasoning_content, answer events delta.content; usage has reasoning_tokens."""
    events = [
        TokenEvent(0, 1, "", -0.1, phase="thinking"),
        TokenEvent(1, 2, "hmm", -0.1, phase="thinking"),
        TokenEvent(2, 3, "Yes", -0.1),
    ]
    out = await chunks(events)
    deltas = [c["choices"][0]["delta"] for c in out[1:4]]
    assert deltas == [{"reasoning_content": ""}, {"reasoning_content": "hmm"}, {"content": "Yes"}]
    assert out[-1]["usage"]["completion_tokens"] == 3
    assert out[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2}


async def test_top_logprobs_and_token_ids_in_logprobs_entries() -> None:
    """Each chunk's logprobs entry carries the token (or token_id:N), its logprob and the alternatives."""
    e = TokenEvent(0, 42, " a", -0.5, top_logprobs=(TopLogprob(" a", -0.5), TopLogprob(" b", -1.0)))
    entry = (await chunks([e], logprobs=True))[1]["choices"][0]["logprobs"]["content"][0]
    assert entry["token"] == " a" and entry["logprob"] == -0.5
    assert [t["token"] for t in entry["top_logprobs"]] == [" a", " b"]
    entry = (await chunks([e], logprobs=True, token_ids=True))[1]["choices"][0]["logprobs"]["content"][0]
    assert entry["token"] == "token_id:42"


async def test_tool_call_events_stream_as_tool_call_deltas_and_finish_tool_calls() -> None:
    """An event with tool_calls is a delta.tool_calls chunk; finish_reason tool_calls passes through."""
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    s = ResponseShape("c", "m", chat=True, logprobs=False, token_ids=False)
    out = [
        f.decode()
        async for f in sse_events(ListStream([TokenEvent(0, 1, "", -0.1, tool_calls=(call,))], "tool_calls"), s, False)
    ]
    frames_ = [json.loads(f.removeprefix("data: ")) for f in out[:-1]]
    assert frames_[1]["choices"][0]["delta"] == {"tool_calls": [call]}
    assert frames_[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_usage_reports_the_prompt_tokens_the_prefix_cache_held() -> None:
    """The stream's cached_tokens is usage.prompt_tokens_details.cached_tokens, as OpenAI and vLLM report it."""
    out = await chunks([TokenEvent(0, 3, "Yes", -0.1)])
    assert out[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}
