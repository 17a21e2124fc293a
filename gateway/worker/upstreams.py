"""``UpstreamPool``: the engines behind one ``RemoteWorker``: which takes a request, which are healthy.

A request goes to the healthy upstream with the least load (its reported running + waiting
requests, plus what this gateway has in flight there). One that refuses a connection or answers
5xx is marked down and the next one tried (failover before the first token only); a 4xx is the
client's error. A background task polls each upstream's health endpoint (and vLLM's ``/metrics``
for load) to find engines and bring them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from gateway.errors import NotReady, RequestError, WorkerUnavailable
from gateway.worker.engines import EngineProfile, Upstream, discover, vllm_load

log = structlog.get_logger(__name__)

RequestBuilder = Callable[[EngineProfile], tuple[str, dict[str, Any]]]
"""Path and JSON body of a request, for the engine it goes to."""


class UpstreamPool:
    def __init__(
        self,
        urls: list[str],
        client: httpx.AsyncClient,
        *,
        health_interval_s: float,
        on_found: Callable[[EngineProfile], None],
    ) -> None:
        self.upstreams = [Upstream(u.rstrip("/")) for u in urls]
        self.ready = False  # some upstream has answered once; stays so while all are briefly down
        self._client = client
        self._interval = health_interval_s
        self._on_found = on_found  # the first engine found names the model and its context
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.poll_once()
        self._poller = asyncio.create_task(self._poll_forever())

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    @property
    def queue_depth(self) -> int:
        return sum(u.reported_queue for u in self.upstreams if u.healthy)

    @property
    def in_flight(self) -> int:
        return sum(u.in_flight for u in self.upstreams)

    # -- requests ------------------------------------------------------------------------------

    async def open(self, build: RequestBuilder, prefer: Upstream | None = None) -> tuple[Upstream, httpx.Response]:
        """A streaming response to ``build``'s request from the best upstream (``prefer`` first, when
        it is healthy); the caller gives it back with ``release``."""
        if not self.ready:
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
                raise refusal(detail)
            upstream.healthy = False
            log.warning("worker_failover", url=upstream.url, status=response.status_code)

    async def release(self, upstream: Upstream, response: httpx.Response) -> None:
        """A request is over (ended, cancelled or cut): the upstream sees the disconnect."""
        self._unlease(upstream)
        await response.aclose()

    def _pick(self, exclude: set[str]) -> Upstream:
        candidates = [u for u in self.upstreams if u.healthy and u.url not in exclude]
        if not candidates:
            raise WorkerUnavailable("no healthy model worker")
        return min(candidates, key=lambda u: u.load)

    def _unlease(self, upstream: Upstream) -> None:
        upstream.in_flight -= 1
        if upstream.slots is not None:
            upstream.slots.release()

    # -- health --------------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.poll_once()

    async def poll_once(self) -> None:
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
        self.ready = self.ready or any(u.healthy for u in self.upstreams)

    async def _discover(self, up: Upstream) -> None:
        profile = await discover(self._client, up.url)
        if profile is None:
            up.healthy = False
            return
        up.profile, up.healthy = profile, True
        if profile.max_concurrency is not None:
            up.slots = asyncio.Semaphore(profile.max_concurrency)
        if not any(u.profile for u in self.upstreams if u is not up):
            self._on_found(profile)
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


def refusal(detail: str) -> RequestError:
    """An engine's 4xx as the client's 400, with the engine's message and ``param`` when it names one."""
    message, param = detail, None
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = json.loads(detail).get("error") or {}
        if isinstance(error, dict):
            message = str(error.get("message") or detail)
            param = error.get("param")
    return RequestError(f"the model worker refused the request: {message}", param=param)
