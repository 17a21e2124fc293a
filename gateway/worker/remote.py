"""``RemoteWorker``: the ``Worker`` protocol over OpenAI-compatible HTTP engines.

Engines: ``stopgate worker``, vLLM, SGLang, llama.cpp's server (``gateway.worker.engines`` says
what each can do and how the worker adapts). One or several upstream URLs; ``UpstreamPool``
(``gateway.worker.upstreams``) picks the one for each request and keeps their health.

Requests carry the client's pass-through fields (``SamplingParams.extra``: tools, tool_choice,
response_format, penalties, logit_bias, user, metadata, ...) as sent; the thinking mode becomes
``chat_template_kwargs.enable_thinking``. Probes and a forced end of thinking continue the
running assistant message with ``continue_final_message`` where the engine has it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import structlog

from gateway.errors import WorkerError
from gateway.worker.engines import EngineProfile, Upstream
from gateway.worker.phases import ThinkMarkers
from gateway.worker.protocol import ChatMessage, ProbeResult, SamplingParams, TokenStream, message_dicts
from gateway.worker.remote_chunks import ChunkReader, _entries
from gateway.worker.remote_stream import RemoteTokenStream
from gateway.worker.remote_tokens import TokenCounter
from gateway.worker.upstreams import UpstreamPool

if TYPE_CHECKING:
    from gateway.settings import Settings

log = structlog.get_logger(__name__)

_OURS = ("model", "messages", "prompt", "stream", "max_tokens", "max_completion_tokens", "n")
"""Request fields the worker sets itself; the same names in ``extra`` are not forwarded."""


class RemoteWorker:
    """Implements ``gateway.worker.protocol.Worker`` against OpenAI-compatible upstreams."""

    def __init__(
        self,
        urls: list[str],
        model: str,
        *,
        health_interval_s: float = 2.0,
        timeout_s: float = 600.0,
        markers: ThinkMarkers | None = None,
        data_dir: Path = Path(".stopgate"),
    ) -> None:
        self.model_id = model
        self.context_length = 8192
        self.tokens_generated = 0
        self.markers = markers or ThinkMarkers()
        self._configured_model = model
        self._data_dir = data_dir
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=5.0), limits=httpx.Limits(max_connections=None)
        )
        self.pool = UpstreamPool(urls, self._client, health_interval_s=health_interval_s, on_found=self._found)
        self._counter: TokenCounter | None = None
        self._token_counts: dict[str, int] = {}
        self._probe_off_logged: set[str] = set()

    @classmethod
    def for_settings(cls, settings: Settings) -> RemoteWorker:
        return cls(
            list(settings.worker_url),
            model=settings.model,
            markers=ThinkMarkers.parse(settings.think_markers),
            data_dir=settings.data_dir,
        )

    async def start(self) -> None:
        await self.pool.start()

    async def close(self) -> None:
        await self.pool.close()
        await self._client.aclose()

    def _found(self, profile: EngineProfile) -> None:
        self.model_id = profile.model_id or self.model_id
        self.context_length = profile.context_length or self.context_length

    @property
    def upstreams(self) -> list[Upstream]:
        return self.pool.upstreams

    @property
    def ready(self) -> bool:
        return self.pool.ready

    @property
    def queue_depth(self) -> int:
        return self.pool.queue_depth

    @property
    def active(self) -> int:
        return self.pool.in_flight

    async def release(self, upstream: Upstream, response: httpx.Response) -> None:
        """A stream's request is over (ended, cancelled or cut): the upstream sees the disconnect."""
        await self.pool.release(upstream, response)

    @property
    def counter(self) -> TokenCounter:
        """The local tokenizer, for engines that report neither usage nor logprobs."""
        if self._counter is None:
            self._counter = TokenCounter([self.model_id, self._configured_model], self._data_dir)
        return self._counter

    # -- generation ----------------------------------------------------------------------------

    def _body(self, profile: EngineProfile, messages: list[dict[str, Any]], params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {k: v for k, v in params.extra.items() if k not in _OURS}
        body.update(
            model=self.model_id,
            messages=messages,
            stream=True,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
        )
        if params.seed is not None:
            body["seed"] = params.seed
        body.update(profile.request_fields(params.top_logprobs))
        if params.thinking != "model":
            kwargs = dict(body.get("chat_template_kwargs") or {})
            kwargs["enable_thinking"] = params.thinking == "on"
            body["chat_template_kwargs"] = kwargs
        return body

    def _request(
        self, profile: EngineProfile, dicts: list[dict[str, Any]], params: SamplingParams, prefix: str | None
    ) -> tuple[str, dict[str, Any]]:
        """Path and body of a generation; with ``prefix``, one that continues an assistant message
        starting with it: ``continue_final_message`` where the engine has it, else a completions
        request on the chat template rendered here (llama.cpp's server)."""
        body = self._body(profile, dicts, params)
        if prefix is None:
            return "/v1/chat/completions", body
        messages = [*dicts, {"role": "assistant", "content": prefix}]
        if profile.continue_final:
            body.update(messages=messages, continue_final_message=True, add_generation_prompt=False)
            return "/v1/chat/completions", body
        prompt = self.counter.render(messages, continue_final=True)
        if prompt is None:
            raise WorkerError("this engine cannot continue a message and no local chat template is at hand")
        del body["messages"]
        body["prompt"] = prompt
        body["logprobs"] = max(1, params.top_logprobs)  # completions: logprobs is the number of alternatives
        body.pop("top_logprobs", None)
        return "/v1/completions", body

    def _reader(self, profile: EngineProfile, params: SamplingParams, prefix: str | None) -> ChunkReader:
        counter = self.counter if not profile.stream_usage or profile.logprobs_need_top else None
        reader = ChunkReader(self.markers, top_logprobs=params.top_logprobs, counter=counter)
        if prefix is not None:
            reader.start_thinking(prefix)
        return reader

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream:
        """``thinking: on`` on an engine other than ``stopgate worker`` (which opens the block itself on
        ``enable_thinking``) starts the assistant message with the start marker, so the model thinks
        even when its template would not."""
        dicts = message_dicts(messages)
        prefixes: dict[str, str | None] = {}

        def build(profile: EngineProfile) -> tuple[str, dict[str, Any]]:
            forced = params.thinking == "on" and profile.kind != "stopgate"
            prefix = prefixes[profile.kind] = self.markers.start + "\n" if forced else None
            return self._request(profile, dicts, params, prefix)

        upstream, response = await self.pool.open(build)
        profile = upstream.profile or EngineProfile()
        reader = self._reader(profile, params, prefixes.get(profile.kind))
        stream = RemoteTokenStream(self, upstream, response, messages, params, reader)
        if not profile.stream_usage:
            stream.prompt_tokens = await asyncio.to_thread(self._count_prompt, dicts)
        return stream

    def _count_prompt(self, dicts: list[dict[str, Any]]) -> int:
        rendered = self.counter.render(dicts, continue_final=False)
        ids = self.counter.ids(rendered) if rendered is not None else None
        return len(ids) if ids is not None else 0

    async def probe(self, stream: TokenStream, suffix: str, max_tokens: int) -> ProbeResult:
        if not isinstance(stream, RemoteTokenStream):
            raise WorkerError("a remote probe needs a remote stream")
        upstream = stream.upstream
        profile = upstream.profile or EngineProfile()
        if not profile.continue_final or profile.max_concurrency == 1:
            if upstream.url not in self._probe_off_logged:
                self._probe_off_logged.add(upstream.url)
                log.warning("probes_off", url=upstream.url, engine=profile.kind, reason="no continue_final_message")
            return ProbeResult("", 0, 0.0)  # confidence 0: no probe rule can fire on it
        probe_params = SamplingParams(max_tokens=max_tokens, thinking=stream.params.thinking)
        body = self._body(profile, self._continued(stream, suffix), probe_params)  # no pass-through: text only
        body.update(stream=False, continue_final_message=True, add_generation_prompt=False)
        body.pop("stream_options", None)
        try:
            r = await self._client.post(upstream.url + "/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise WorkerError(f"probe to {upstream.url} failed: {exc}") from exc
        if r.status_code != 200:
            raise WorkerError(f"probe to {upstream.url}: HTTP {r.status_code}")
        choice = r.json()["choices"][0]
        lps = [e.logprob for e in _entries(choice, 0)]
        return ProbeResult.from_logprobs((choice.get("message") or {}).get("content") or "", lps)

    def _continued(self, stream: RemoteTokenStream, suffix: str) -> list[dict[str, Any]]:
        return [*message_dicts(stream.messages), {"role": "assistant", "content": stream.reader.raw_text + suffix}]

    async def end_thinking(self, stream: TokenStream, text: str) -> int:
        """Cancel the running request and continue the assistant message after ``text``."""
        if not isinstance(stream, RemoteTokenStream):
            raise WorkerError("a remote end of thinking needs a remote stream")
        appended = await self._count_tokens(stream.upstream, text)
        stream.appended_tokens += appended
        await stream.cut(text)
        remaining = stream.remaining
        if remaining < 1:
            stream.end("length")
            return appended
        params = stream.params
        dicts = message_dicts(stream.messages)
        prefix = stream.reader.raw_text
        cont = msgspec.structs.replace(params, max_tokens=remaining)

        def build(profile: EngineProfile) -> tuple[str, dict[str, Any]]:
            return self._request(profile, dicts, cont, prefix)

        try:
            upstream, response = await self.pool.open(build, prefer=stream.upstream)
        except WorkerError as exc:
            log.warning("thinking_end_not_continued", url=stream.upstream.url, error=exc.message)
            stream.end("stop")
            return appended
        stream.resume(upstream, response)
        return appended

    async def _count_tokens(self, upstream: Upstream, text: str) -> int:
        """Tokens of ``text`` by the engine's own tokenizer (``/tokenize``), else the local one."""
        if text in self._token_counts:
            return self._token_counts[text]
        profile = upstream.profile or EngineProfile()
        count: int | None = None
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
            if profile.kind == "llamacpp":
                r = await self._client.post(upstream.url + "/extras/tokenize", json={"input": text}, timeout=5.0)
                count = len(r.json()["tokens"]) if r.status_code == 200 else None
            else:
                body = {"model": self.model_id, "prompt": text, "add_special_tokens": False}
                r = await self._client.post(upstream.url + "/tokenize", json=body, timeout=5.0)
                count = int(r.json()["count"]) if r.status_code == 200 else None
        if count is None:
            ids = await asyncio.to_thread(self.counter.ids, text)
            count = len(ids) if ids is not None else max(1, len(text) // 4)
        self._token_counts[text] = count
        return count
