"""``RemoteWorker``: the ``Worker`` protocol over OpenAI-compatible HTTP (``stopgate worker`` or vLLM).

One or several upstream URLs. Each request goes to the healthy upstream with the least load
(its reported queue depth + active rows, plus what this gateway has in flight there); an
upstream that refuses a connection is marked down and the next one is tried (failover before
the first token only: a stream that breaks mid-answer ends with an error, it is not replayed).
A background task polls ``/healthz`` to bring upstreams back.

Tokens come from ``/v1/chat/completions`` with ``logprobs``; ``return_tokens_as_token_ids``
(understood by vLLM and our worker) gives token ids for the repetition rules, else a stable hash
of the token text stands in. Probes continue the running answer through the same endpoint with
``continue_final_message`` (a vLLM extension our worker also serves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from gateway.errors import NotReady, RequestError, WorkerError, WorkerUnavailable
from gateway.worker.protocol import (
    ChatMessage,
    FinishReason,
    ProbeResult,
    SamplingParams,
    TokenEvent,
    TokenStream,
    message_dicts,
)

log = structlog.get_logger(__name__)


@dataclass
class Upstream:
    url: str
    healthy: bool = False
    reported_load: int = 0
    reported_queue: int = 0
    in_flight: int = 0

    @property
    def load(self) -> int:
        return self.reported_load + self.in_flight


class RemoteTokenStream:
    def __init__(
        self, worker: RemoteWorker, upstream: Upstream, response: httpx.Response, messages: Sequence[ChatMessage]
    ) -> None:
        self._worker = worker
        self._upstream = upstream
        self._response = response
        self.messages = list(messages)
        self.text: list[str] = []
        self.prompt_tokens = 0
        self.finish_reason: FinishReason | None = None
        self._cancelled = False
        self._released = False
        upstream.in_flight += 1

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        index = 0
        try:
            async for line in self._response.aiter_lines():
                if self._cancelled:
                    break
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise WorkerError(f"upstream error: {chunk['error'].get('message', chunk['error'])}")
                if chunk.get("usage"):
                    self.prompt_tokens = int(chunk["usage"].get("prompt_tokens") or 0)
                for choice in chunk.get("choices") or []:
                    for event in _events(choice, index):
                        index += 1
                        self.text.append(event.text)
                        self._worker.tokens_generated += 1
                        yield event
                    if choice.get("finish_reason"):
                        self.finish_reason = "length" if choice["finish_reason"] == "length" else "stop"
        except httpx.HTTPError as exc:
            if not self._cancelled:
                raise WorkerError(f"upstream {self._upstream.url} broke off: {exc}") from exc
        finally:
            if self._cancelled:
                self.finish_reason = "cancelled"
            await self._release()

    def cancel(self) -> None:
        """Closing the HTTP response is how the upstream learns to stop (it sees the disconnect)."""
        if not self._cancelled:
            self._cancelled = True
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(self._release())

    async def _release(self) -> None:
        if not self._released:
            self._released = True
            self._upstream.in_flight -= 1
            await self._response.aclose()


def _events(choice: dict[str, Any], start: int) -> list[TokenEvent]:
    """One TokenEvent per logprobs entry (a chunk may carry several tokens)."""
    content = ((choice.get("logprobs") or {}).get("content")) or []
    text = (choice.get("delta") or {}).get("content") or ""
    if not content:
        return [TokenEvent(start, _token_id(text), text, 0.0)] if text else []
    # Several tokens in one chunk: the text is not split per token, so it rides on the last one.
    last = len(content) - 1
    return [
        TokenEvent(
            start + i,
            _token_id(entry.get("token", "")),
            text if i == last else "",
            float(entry.get("logprob") or 0.0),
        )
        for i, entry in enumerate(content)
    ]


def _token_id(token: str) -> int:
    if token.startswith("token_id:"):
        with contextlib.suppress(ValueError):
            return int(token[9:])
    return zlib.crc32(token.encode("utf-8"))


class RemoteWorker:
    """Implements ``gateway.worker.protocol.Worker`` against OpenAI-compatible upstreams."""

    def __init__(
        self, urls: list[str], model: str, *, health_interval_s: float = 2.0, timeout_s: float = 600.0
    ) -> None:
        self.upstreams = [Upstream(u.rstrip("/")) for u in urls]
        self.model_id = model
        self.context_length = 8192
        self.tokens_generated = 0
        self._interval = health_interval_s
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0))
        self._poller: asyncio.Task[None] | None = None
        self._ready = False

    async def start(self) -> None:
        await self._poll_once()
        for up in self.upstreams:
            if up.healthy:
                models = (await self._client.get(up.url + "/v1/models")).json().get("data") or []
                if models:
                    self.model_id = models[0]["id"]
                    self.context_length = int(models[0].get("max_model_len") or self.context_length)
                break
        self._ready = any(u.healthy for u in self.upstreams)
        self._poller = asyncio.create_task(self._poll_forever())

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self._client.aclose()

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def queue_depth(self) -> int:
        return sum(u.reported_queue for u in self.upstreams if u.healthy)

    @property
    def active(self) -> int:
        return sum(u.in_flight for u in self.upstreams)

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream:
        body = {
            "model": self.model_id,
            "messages": message_dicts(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": True,
            "return_tokens_as_token_ids": True,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        upstream, response = await self._open(body)
        return RemoteTokenStream(self, upstream, response, messages)

    async def probe(self, stream: TokenStream, suffix: str, max_tokens: int) -> ProbeResult:
        if not isinstance(stream, RemoteTokenStream):
            raise WorkerError("a remote probe needs a remote stream")
        partial = "".join(stream.text) + suffix
        body = {
            "model": self.model_id,
            "max_tokens": max_tokens,
            "temperature": 0,
            "logprobs": True,
            "messages": [*message_dicts(stream.messages), {"role": "assistant", "content": partial}],
            "continue_final_message": True,
            "add_generation_prompt": False,
        }
        upstream = self._pick()
        try:
            r = await self._client.post(upstream.url + "/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise WorkerError(f"probe to {upstream.url} failed: {exc}") from exc
        if r.status_code != 200:
            raise WorkerError(f"probe to {upstream.url}: HTTP {r.status_code}")
        choice = r.json()["choices"][0]
        lps = [float(e.get("logprob") or 0.0) for e in ((choice.get("logprobs") or {}).get("content") or [])]
        return ProbeResult.from_logprobs(choice["message"]["content"] or "", lps)

    # -- routing -------------------------------------------------------------------------------

    def _pick(self, exclude: set[str] | None = None) -> Upstream:
        candidates = [u for u in self.upstreams if u.healthy and u.url not in (exclude or set())]
        if not candidates:
            raise WorkerUnavailable("no healthy model worker")
        return min(candidates, key=lambda u: u.load)

    async def _open(self, body: dict[str, Any]) -> tuple[Upstream, httpx.Response]:
        if not self._ready:
            raise NotReady("no model worker has answered yet")
        tried: set[str] = set()
        while True:
            upstream = self._pick(tried)
            tried.add(upstream.url)
            request = self._client.build_request("POST", upstream.url + "/v1/chat/completions", json=body)
            try:
                response = await self._client.send(request, stream=True)
            except httpx.TransportError as exc:
                upstream.healthy = False
                log.warning("worker_failover", url=upstream.url, error=str(exc))
                continue
            if response.status_code == 200:
                return upstream, response
            detail = (await response.aread()).decode("utf-8", "replace")[:300]
            await response.aclose()
            if 400 <= response.status_code < 500:
                raise RequestError(f"the model worker refused the request: {detail}")
            upstream.healthy = False
            log.warning("worker_failover", url=upstream.url, status=response.status_code)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._poll_once()

    async def _poll_once(self) -> None:
        for up in self.upstreams:
            try:
                r = await self._client.get(up.url + "/healthz", timeout=2.0)
                if r.status_code == 404:  # vLLM answers /health with an empty body
                    r = await self._client.get(up.url + "/health", timeout=2.0)
                info = r.json() if r.status_code == 200 and r.content else {}
                up.healthy = r.status_code == 200 and info.get("ready", True) is not False
                up.reported_queue = int(info.get("queue_depth", 0))
                up.reported_load = up.reported_queue + int(info.get("active", 0))
            except (httpx.HTTPError, ValueError):
                up.healthy = False
        self._ready = self._ready or any(u.healthy for u in self.upstreams)
