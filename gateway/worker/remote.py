"""``RemoteWorker``: the ``Worker`` protocol over OpenAI-compatible HTTP engines.

Engines: ``stopgate worker``, vLLM, SGLang, llama.cpp's server (``gateway.worker.engines`` says
what each can do and how the worker adapts). One or several upstream URLs; each request goes to
the healthy upstream with the least load (its reported running + waiting requests, plus what
this gateway has in flight there); an upstream that refuses a connection is marked down and the
next one tried (failover before the first token only). A background task polls each upstream's
health endpoint (and vLLM's ``/metrics`` for load) to bring upstreams back.

Requests carry the client's pass-through fields (``SamplingParams.extra``: tools, tool_choice,
response_format, penalties, logit_bias, user, metadata, ...) as sent; the thinking mode becomes
``chat_template_kwargs.enable_thinking``. Probes and a forced end of thinking continue the
running assistant message with ``continue_final_message`` where the engine has it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import structlog

from gateway.errors import NotReady, RequestError, WorkerError, WorkerUnavailable
from gateway.worker.engines import EngineProfile, Upstream, discover, vllm_load
from gateway.worker.phases import ThinkMarkers
from gateway.worker.protocol import ChatMessage, ProbeResult, SamplingParams, TokenStream, message_dicts
from gateway.worker.remote_chunks import ChunkReader, _entries
from gateway.worker.remote_stream import RemoteTokenStream
from gateway.worker.remote_tokens import TokenCounter

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
        self.upstreams = [Upstream(u.rstrip("/")) for u in urls]
        self.model_id = model
        self.context_length = 8192
        self.tokens_generated = 0
        self.markers = markers or ThinkMarkers()
        self._configured_model = model
        self._data_dir = data_dir
        self._interval = health_interval_s
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=5.0), limits=httpx.Limits(max_connections=None)
        )
        self._poller: asyncio.Task[None] | None = None
        self._ready = False
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
        await self._poll_once()
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

        upstream, response = await self._open(build)
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
            upstream, response = await self._open(build, prefer=stream.upstream)
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

    # -- routing -------------------------------------------------------------------------------

    def _pick(self, exclude: set[str]) -> Upstream:
        candidates = [u for u in self.upstreams if u.healthy and u.url not in exclude]
        if not candidates:
            raise WorkerUnavailable("no healthy model worker")
        return min(candidates, key=lambda u: u.load)

    async def _open(
        self,
        build: Callable[[EngineProfile], tuple[str, dict[str, Any]]],
        prefer: Upstream | None = None,
    ) -> tuple[Upstream, httpx.Response]:
        if not self._ready:
            raise NotReady("no model worker has answered yet")
        tried: set[str] = set()
        while True:
            if prefer is not None and prefer.healthy and prefer.url not in tried:
                upstream = prefer
            else:
                upstream = self._pick(tried)
            tried.add(upstream.url)
            path, body = build(upstream.profile or EngineProfile())
            if upstream.slots is not None:
                await upstream.slots.acquire()
            upstream.in_flight += 1
            request = self._client.build_request("POST", upstream.url + path, json=body)
            try:
                response = await self._client.send(request, stream=True)
            except httpx.TransportError as exc:
                self._unlease(upstream)
                upstream.healthy = False
                log.warning("worker_failover", url=upstream.url, error=str(exc))
                continue
            if response.status_code == 200:
                return upstream, response
            detail = (await response.aread()).decode("utf-8", "replace")[:500]
            await response.aclose()
            self._unlease(upstream)
            if 400 <= response.status_code < 500:
                raise _refusal(detail)
            upstream.healthy = False
            log.warning("worker_failover", url=upstream.url, status=response.status_code)

    def _unlease(self, upstream: Upstream) -> None:
        upstream.in_flight -= 1
        if upstream.slots is not None:
            upstream.slots.release()

    async def release(self, upstream: Upstream, response: httpx.Response) -> None:
        """A stream's request is over (ended, cancelled or cut): the upstream sees the disconnect."""
        self._unlease(upstream)
        await response.aclose()

    # -- health --------------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._poll_once()

    async def _poll_once(self) -> None:
        for up in self.upstreams:
            if up.profile is None:
                await self._discover(up)
                continue
            try:
                await self._check(up)
            except httpx.TimeoutException:
                # An engine busy with our requests (llama.cpp answers nothing while it generates) is
                # slow, not down; one with nothing of ours in flight that does not answer is down.
                up.healthy = up.in_flight > 0
            except (httpx.HTTPError, ValueError):
                up.healthy = False
        self._ready = self._ready or any(u.healthy for u in self.upstreams)

    async def _discover(self, up: Upstream) -> None:
        profile = await discover(self._client, up.url)
        if profile is None:
            up.healthy = False
            return
        up.profile, up.healthy = profile, True
        if profile.max_concurrency is not None:
            up.slots = asyncio.Semaphore(profile.max_concurrency)
        if not any(u.profile for u in self.upstreams if u is not up):  # the first engine found names the model
            self.model_id = profile.model_id or self.model_id
            self.context_length = profile.context_length or self.context_length
        log.info("engine_found", url=up.url, engine=profile.kind, model=profile.model_id, notes=profile.notes)

    async def _check(self, up: Upstream) -> None:
        assert up.profile is not None
        r = await self._client.get(up.url + up.profile.health_path, timeout=2.0)
        up.healthy = r.status_code == 200
        if up.profile.kind == "stopgate" and up.healthy:
            info = r.json()
            up.healthy = info.get("ready", True) is not False
            up.reported_queue = int(info.get("queue_depth", 0))
            up.reported_load = up.reported_queue + int(info.get("active", 0))
        elif up.profile.kind == "vllm" and up.healthy:
            m = await self._client.get(up.url + "/metrics", timeout=2.0)
            if m.status_code == 200:
                running, waiting = vllm_load(m.text)
                up.reported_queue, up.reported_load = waiting, running + waiting


def _refusal(detail: str) -> RequestError:
    """An engine's 4xx as the client's 400, with the engine's message and ``param`` when it names one."""
    import json

    message, param = detail, None
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = json.loads(detail).get("error") or {}
        if isinstance(error, dict):
            message = str(error.get("message") or detail)
            param = error.get("param")
    return RequestError(f"the model worker refused the request: {message}", param=param)
