"""``create_app(settings)``: the one place where Stopgate's parts are built and connected.

Start-up order (in the lifespan, never at import): logging -> Redis (ours or the configured one)
-> policy store, audit log, classifier -> model worker (loads in the background, so /healthz
answers at once and /readyz turns ready when the model is in) -> serve. Shutdown reverses it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from gateway import __version__
from gateway.audit.log import AuditLog
from gateway.classify.classifier import Classifier
from gateway.http.admin_audit import AuditController
from gateway.http.admin_policies import AdminPoliciesController
from gateway.http.auth import KeyRing
from gateway.http.chat import ChatController
from gateway.http.classify import AdminDomainsController, ClassifyController
from gateway.http.errors import EXCEPTION_HANDLERS
from gateway.http.health import HealthController
from gateway.metrics import Metrics
from gateway.policy.loader import load_policies_dir
from gateway.policy.store import PolicyStore
from gateway.ratelimit import RateLimiter
from gateway.redis_server import LocalRedis
from gateway.services import Services
from gateway.serving.chat import ChatService
from gateway.serving.routing import Router
from gateway.settings import Settings
from gateway.worker.cores import reserve_cores
from gateway.worker.local import LocalWorker
from gateway.worker.protocol import Worker
from gateway.worker.remote import RemoteWorker

log = structlog.get_logger(__name__)


def build_worker(settings: Settings) -> Worker:
    if settings.worker_url:
        return RemoteWorker(list(settings.worker_url), model=settings.model)
    return _local_worker(settings)


def _local_worker(settings: Settings) -> LocalWorker:
    # Before the classifier or the model runs a torch op: only the decode thread may take the cores.
    threads = reserve_cores()
    return LocalWorker(settings.model, settings.device, settings.data_dir, settings.max_batch_size, threads=threads)


def create_app(settings: Settings, *, worker: Worker | None = None) -> Litestar:
    worker = worker or build_worker(settings)
    services = Services(settings=settings, worker=worker)
    services.metrics = Metrics(worker)
    router = Router(default_max_tokens=settings.default_max_tokens)
    # Validated here, before serving: a broken domain or policy file stops start-up with its location.
    classifier = Classifier.from_settings(settings)
    domains = classifier.domains.names
    load_policies_dir(settings.policies_dir, domains)
    services.classifier = router.classifier = classifier
    services.chat = ChatService(
        worker, router, max_concurrent_streams=settings.max_concurrent_streams, metrics=services.metrics
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            redis_url = settings.redis_url or _start_local_redis(settings, stack)
            stack.callback(classifier.close)
            services.ratelimit = services.chat.ratelimit = RateLimiter(
                redis_url, settings.rate_limit_rpm, settings.rate_limit_tpm
            )
            await services.ratelimit.start()
            stack.push_async_callback(services.ratelimit.close)
            services.policies = router.policies = PolicyStore(redis_url, settings.policies_dir, domains)
            await services.policies.start()
            stack.push_async_callback(services.policies.close)
            services.audit = AuditLog(settings.audit_log, redis_url, settings.data_dir / "audit-spill")
            await services.audit.start()
            stack.push_async_callback(services.audit.close)
            services.chat.audit = services.audit
            loading = asyncio.create_task(_start_worker(worker))
            stack.push_async_callback(worker.close)
            stack.push_async_callback(_cancel, loading)
            yield

    def on_app_init(config: AppConfig) -> AppConfig:
        config.state.update({"services": services, "keyring": KeyRing(settings.api_keys)})
        return config

    return Litestar(
        route_handlers=[
            ChatController,
            HealthController,
            ClassifyController,
            AdminDomainsController,
            AuditController,
            AdminPoliciesController,
        ],
        dependencies={"services": Provide(lambda: services, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        on_app_init=[on_app_init],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Stopgate", version=__version__, path="/schema", render_plugins=[SwaggerRenderPlugin()]
        ),
        debug=False,
    )


def create_worker_app(settings: Settings, *, worker: LocalWorker | None = None) -> Litestar:
    """The model worker as its own OpenAI-compatible server (``stopgate worker``), for GPU hosts."""
    from gateway.http.worker_api import WorkerController

    worker = worker or _local_worker(settings)
    services = Services(settings=settings, worker=worker)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        loading = asyncio.create_task(_start_worker(worker))
        try:
            yield
        finally:
            await _cancel(loading)
            await worker.close()

    return Litestar(
        route_handlers=[WorkerController],
        dependencies={"services": Provide(lambda: services, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="Stopgate worker", version=__version__, path="/schema"),
    )


def _start_local_redis(settings: Settings, stack: contextlib.AsyncExitStack) -> str:
    """No STOPGATE_REDIS_URL: run our own Redis-compatible server under the data dir, stop it on exit."""
    server = LocalRedis(settings.data_dir / "redis")
    server.start()
    stack.callback(server.stop)
    log.info("local_redis_started", url=server.url)
    return server.url


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def _start_worker(worker: Worker) -> None:
    try:
        if not worker.ready:
            await worker.start()
        log.info("worker_ready", model=worker.model_id)
    except Exception:
        log.exception("worker_failed_to_start")
        raise
