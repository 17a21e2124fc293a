"""``create_app(settings)``: the one place where Stopgate's parts are built and connected.

Start-up order (never at import; the CLI configures logging first): ``create_app`` reserves the cores
for a local decode thread, builds the classifier and validates the domain and policy files (a broken
file stops start-up); the lifespan then starts Redis (ours or the configured one) -> rate limiter,
policy store, audit log -> model worker (loads in the background, so /healthz answers at once and
/readyz turns ready when the model is in) -> serve. Shutdown reverses it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from gateway import __version__
from gateway.audit.log import AuditLog
from gateway.autopilot import running_autopilot
from gateway.classify.classifier import Classifier
from gateway.http.admin_audit import AuditController
from gateway.http.admin_autopilot import AdminAutopilotController
from gateway.http.admin_policies import AdminPoliciesController
from gateway.http.auth import AdminGate, KeyRing
from gateway.http.chat import ChatController
from gateway.http.classify import AdminDomainsController, ClassifyController
from gateway.http.errors import EXCEPTION_HANDLERS
from gateway.http.health import HealthController
from gateway.metrics import Metrics
from gateway.policy.loader import load_policies_dir
from gateway.policy.store import PolicyStore
from gateway.ratelimit import RateLimiter
from gateway.redis_server import SUBDIR, LocalRedis
from gateway.services import Services
from gateway.serving.chat import ChatService
from gateway.serving.routing import Router
from gateway.settings import Settings
from gateway.worker.local import LocalWorker
from gateway.worker.protocol import Worker
from gateway.worker.remote import RemoteWorker

log = structlog.get_logger(__name__)


def build_worker(settings: Settings) -> Worker:
    if settings.worker_url:
        return RemoteWorker.for_settings(settings)
    return LocalWorker.for_serving(settings)


def create_app(settings: Settings, *, worker: Worker | None = None) -> Litestar:
    worker = worker or build_worker(settings)
    services = Services(settings, worker, Metrics(worker))
    # Validated here, before serving: a broken domain or policy file stops start-up with its location.
    classifier = Classifier.from_settings(settings)
    domains = classifier.domains.names
    load_policies_dir(settings.policies_dir, domains)
    services.attach(classifier=classifier)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            redis_url = settings.redis_url or _start_local_redis(settings, stack)
            stack.callback(classifier.close)
            ratelimit = RateLimiter(redis_url, settings.rate_limit_rpm, settings.rate_limit_tpm)
            await ratelimit.start()
            stack.push_async_callback(ratelimit.close)
            policies = PolicyStore(redis_url, settings.policies_dir, domains, source=settings.policies_source)
            await policies.start()
            stack.push_async_callback(policies.close)
            audit = AuditLog(settings.audit_log, redis_url, settings.data_dir / "audit-spill")
            await audit.start()
            stack.push_async_callback(audit.close)
            autopilot = await stack.enter_async_context(
                running_autopilot(settings, redis_url, domains, embed=classifier.embedder.embed)
            )
            chat = ChatService(
                worker,
                Router(classifier, policies),
                max_concurrent_streams=settings.max_concurrent_streams,
                default_max_tokens=settings.default_max_tokens,
                end_of_thinking=f"\n{settings.think_markers[1]}\n\n",
                audit=audit,
                metrics=services.metrics,
                ratelimit=ratelimit,
                samples=autopilot.samples,
                # The prefill hides the classifier. A wrong guess costs one cancelled request: a remote
                # engine's, or locally one whose prompt the prefix cache hands to the right request.
                early_start=bool(settings.worker_url) or settings.prefix_cache_mb > 0,
            )
            services.attach(ratelimit=ratelimit, policies=policies, audit=audit, chat=chat, autopilot=autopilot.runner)
            await stack.enter_async_context(_running(worker))
            yield

    return http_app(
        services,
        [
            ChatController,
            HealthController,
            ClassifyController,
            AdminDomainsController,
            AuditController,
            AdminPoliciesController,
            AdminAutopilotController,
        ],
        lifespan,
        OpenAPIConfig(title="Stopgate", version=__version__, path="/schema", render_plugins=[SwaggerRenderPlugin()]),
    )


def create_worker_app(settings: Settings, *, worker: LocalWorker | None = None) -> Litestar:
    """The model worker as its own OpenAI-compatible server (``stopgate worker``), for GPU hosts."""
    from gateway.http.worker_api import WorkerController

    running = worker or LocalWorker.for_serving(settings)
    return http_app(
        Services(settings, running, Metrics(running)),
        [WorkerController],
        lambda app: _running(running),
        OpenAPIConfig(title="Stopgate worker", version=__version__, path="/schema"),
    )


def http_app(
    services: Services,
    handlers: list[Any],
    lifespan: Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]] | None = None,
    openapi: OpenAPIConfig | None = None,
) -> Litestar:
    """What both apps share: ``services`` injected into controllers, one error mapping, body limit,
    the key rings the guards read (built once)."""
    settings = services.settings
    state = State({"keyring": KeyRing(settings.api_keys), "admin_gate": AdminGate(settings.admin_key)})
    return Litestar(
        route_handlers=handlers,
        dependencies={"services": Provide(lambda: services, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan] if lifespan is not None else [],
        request_max_body_size=services.settings.max_body_bytes,
        openapi_config=openapi or OpenAPIConfig(title="Stopgate", version=__version__, path="/schema"),
        debug=False,
        logging_config=None,  # gateway.logs configures every logger of the process; Litestar adds none
        state=state,
    )


def _start_local_redis(settings: Settings, stack: contextlib.AsyncExitStack) -> str:
    """No STOPGATE_REDIS_URL: run our own Redis-compatible server under the data dir, stop it on exit."""
    server = LocalRedis(settings.data_dir / SUBDIR)
    server.start()
    stack.callback(server.stop)
    log.info("local_redis_started", url=server.url)
    return server.url


@contextlib.asynccontextmanager
async def _running(worker: Worker) -> AsyncIterator[None]:
    """Load the worker in the background (/healthz answers at once); on exit stop loading, then close it."""
    loading = asyncio.create_task(_start_worker(worker))
    try:
        yield
    finally:
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await loading
        await worker.close()


async def _start_worker(worker: Worker) -> None:
    try:
        if not worker.ready:
            await worker.start()
        log.info("worker_ready", model=worker.model_id)
    except Exception:
        log.exception("worker_failed_to_start")
        raise
