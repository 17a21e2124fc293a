"""What each OpenAI-compatible engine can do, found out at start, and how the remote worker adapts.

Discovery asks ``/healthz`` (``stopgate worker``: readiness and load as JSON), then ``/health``
(vLLM, SGLang, llama.cpp's own ``llama-server``), then ``/v1/models`` (llama-cpp-python's server
has no health endpoint). ``/v1/models``' ``owned_by`` names the engine. Where an engine lacks
something, the worker degrades in the stated way of the profile's ``notes`` (logged at start).

| engine     | token ids | continue_final | usage in stream | load figures        | concurrency |
|------------|-----------|----------------|-----------------|---------------------|-------------|
| stopgate   | yes       | yes            | yes, at once    | /healthz JSON       | batched     |
| vllm       | yes       | yes            | yes, per chunk  | /metrics            | batched     |
| sglang     | no        | yes            | yes             | in-flight only      | batched     |
| llamacpp   | no        | no             | no              | in-flight only      | one at a time |
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

HEALTH_PATHS = ("/healthz", "/health", "/v1/models")


@dataclass
class EngineProfile:
    """One upstream's engine and the request shape it needs."""

    kind: str = "openai"  # stopgate | vllm | sglang | llamacpp | openai
    health_path: str = "/health"
    token_ids: bool = False  # understands return_tokens_as_token_ids
    continue_final: bool = False  # understands continue_final_message (probes, forced end of thinking)
    stream_usage: bool = True  # sends a trailing usage chunk with stream_options.include_usage
    continuous_usage: bool = False  # vLLM: usage on every chunk (prompt tokens known at once)
    logprobs_need_top: bool = False  # llama.cpp: logprobs are null unless top_logprobs >= 1
    max_concurrency: int | None = None  # llama.cpp: one request at a time (a second one interrupts)
    context_length: int | None = None
    model_id: str | None = None
    notes: list[str] = field(default_factory=list)

    def request_fields(self, top_logprobs: int) -> dict[str, Any]:
        """The fields this engine needs for per-token logprobs, ids and usage."""
        body: dict[str, Any] = {"logprobs": True}
        top = max(top_logprobs, 1) if self.logprobs_need_top else top_logprobs
        if top:
            body["top_logprobs"] = top
        # Token ids replace the token text in logprobs entries (alternatives too), so they are
        # asked for only when the client wants no alternatives.
        if self.token_ids and top_logprobs == 0:
            body["return_tokens_as_token_ids"] = True
        if self.stream_usage:
            options: dict[str, Any] = {"include_usage": True}
            if self.continuous_usage:
                options["continuous_usage_stats"] = True
            body["stream_options"] = options
        if self.kind == "llamacpp":
            body["repeat_penalty"] = 1.0  # its default 1.1 would make greedy differ from every other engine
        return body


def profile_for(kind: str, health_path: str) -> EngineProfile:
    if kind == "stopgate":
        return EngineProfile(kind, health_path, token_ids=True, continue_final=True, continuous_usage=True)
    if kind == "vllm":
        return EngineProfile(kind, health_path, token_ids=True, continue_final=True, continuous_usage=True)
    if kind == "sglang":
        return EngineProfile(kind, health_path, continue_final=True)
    if kind == "llamacpp":
        return EngineProfile(
            kind,
            health_path,
            stream_usage=False,
            logprobs_need_top=True,
            max_concurrency=1,
            notes=[
                "no token ids: repetition rules use a hash of each token's text",
                "no usage in streams: prompt tokens counted with the local tokenizer when there is one",
                "no continue_final_message: probes off (a probe would also wait behind the stream it probes); "
                "a forced end of thinking continues through /v1/completions with the locally rendered template",
                "one request at a time: the gateway queues requests to it instead of letting one interrupt another",
            ],
        )
    return EngineProfile(kind, health_path, notes=["unknown engine: no token ids, probes need continue_final_message"])


def kind_from_models(models: dict[str, Any]) -> tuple[str, str | None, int | None]:
    """Engine kind, model id and context length from a ``/v1/models`` answer."""
    data = models.get("data") or []
    if not data:
        return "openai", None, None
    first = data[0]
    owner = str(first.get("owned_by") or "").lower()
    kind = {"vllm": "vllm", "sglang": "sglang", "stopgate": "stopgate", "llamacpp": "llamacpp", "me": "llamacpp"}.get(
        owner, "openai"
    )
    ctx = first.get("max_model_len") or first.get("context_length") or (first.get("meta") or {}).get("n_ctx_train")
    return kind, first.get("id"), int(ctx) if ctx else None


async def discover(client: httpx.AsyncClient, url: str) -> EngineProfile | None:
    """The engine behind ``url``, or None when nothing answers there yet."""
    health_path: str | None = None
    for path in HEALTH_PATHS:
        try:
            r = await client.get(url + path, timeout=3.0)
        except httpx.HTTPError:
            return None
        if r.status_code == 200:
            health_path = path
            break
        if r.status_code == 503:  # there, but still loading
            return None
    if health_path is None:
        return None
    try:
        models = (await client.get(url + "/v1/models", timeout=3.0)).json()
    except (httpx.HTTPError, ValueError):
        return None
    kind, model_id, ctx = kind_from_models(models if isinstance(models, dict) else {})
    if health_path == "/healthz" and kind == "openai":
        kind = "stopgate"
    profile = profile_for(kind, health_path)
    profile.model_id, profile.context_length = model_id, ctx
    if ctx is None:
        profile.notes.append("no context length reported: the gateway's default is assumed")
    return profile


_METRIC = re.compile(r"^(vllm:num_requests_(?:running|waiting))(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$", re.MULTILINE)


def vllm_load(metrics_text: str) -> tuple[int, int]:
    """(running, waiting) requests from vLLM's Prometheus ``/metrics``."""
    running = waiting = 0.0
    for name, value in _METRIC.findall(metrics_text):
        if name.endswith("running"):
            running += float(value)
        else:
            waiting += float(value)
    return int(running), int(waiting)


@dataclass
class Upstream:
    """One engine URL as the remote worker routes to it: health, load, and what it can do."""

    url: str
    healthy: bool = False
    reported_load: int = 0
    reported_queue: int = 0
    in_flight: int = 0
    profile: EngineProfile | None = None
    slots: asyncio.Semaphore | None = field(default=None, repr=False)  # engines that take one request at a time

    @property
    def load(self) -> int:
        return self.reported_load + self.in_flight
