"""Prometheus metrics, on a registry of the app's own (several apps may live in one process)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from gateway.serving.outcome import Outcome


class Metrics:
    def __init__(self, worker: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stopgate_requests_total",
            "Chat requests finished",
            ["domain", "finish_reason", "stop_rule"],
            registry=self.registry,
        )
        self.completion_tokens = Counter(
            "stopgate_completion_tokens_total", "Completion tokens sent", ["domain"], registry=self.registry
        )
        self.disconnects = Counter(
            "stopgate_client_disconnects_total", "Streams the client left", registry=self.registry
        )
        self.ttft = Histogram(
            "stopgate_ttft_seconds",
            "Time to first token",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.active = Gauge("stopgate_active_streams", "Streams in progress", registry=self.registry)
        queue = Gauge("stopgate_worker_queue_depth", "Requests waiting for a batch slot", registry=self.registry)
        queue.set_function(lambda: worker.queue_depth)
        generated = Gauge(
            "stopgate_worker_tokens_generated", "Tokens decoded by the worker since start", registry=self.registry
        )
        generated.set_function(lambda: worker.tokens_generated)
        if hasattr(worker, "prompt_tokens_reused"):  # the local worker's prefix cache
            reused = Gauge(
                "stopgate_worker_prompt_tokens_reused",
                "Prompt tokens taken from the prefix cache instead of computed, since start",
                registry=self.registry,
            )
            reused.set_function(lambda: worker.prompt_tokens_reused)

    def stream_opened(self) -> None:
        self.active.inc()

    def stream_closed(self, domain: str, outcome: Outcome, ttft_ms: float | None) -> None:
        self.active.dec()
        self.requests.labels(domain, outcome.finish_reason or "error", outcome.stop_rule or "").inc()
        self.completion_tokens.labels(domain).inc(outcome.completion_tokens)
        if outcome.client_disconnected:
            self.disconnects.inc()
        if ttft_ms is not None:
            self.ttft.observe(ttft_ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
