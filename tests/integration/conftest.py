"""A real gateway for the integration tests: ``create_app`` on uvicorn, on a free loopback port.

One server per session (the model loads once); it talks to the session's real Redis server.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.app import create_app, create_worker_app
from gateway.redis_server import LocalRedis, free_port
from gateway.settings import Settings
from gateway.worker.local import LocalWorker

ADMIN_KEY = "test-admin-key"
MODEL = "smollm2-135m-instruct"


@contextlib.asynccontextmanager
async def running_local_worker(**options: Any) -> AsyncIterator[LocalWorker]:
    """The embedded model in a started ``LocalWorker`` on CPU (``options`` as its keywords), closed on leaving."""
    worker = LocalWorker(MODEL, "cpu", Path(".stopgate"), **options)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.close()


def chat_body(content: str, **fields: Any) -> dict[str, Any]:
    """A greedy chat request for the served model with one user message; ``fields`` add to it."""
    return {"model": MODEL, "temperature": 0, "messages": [{"role": "user", "content": content}], **fields}


@dataclass
class RunningGateway:
    url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread

    def metric(self, name: str) -> float:
        """The value of one unlabelled metric from /metrics."""
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    def chat(
        self, content: str, *, headers: dict[str, str] | None = None, timeout: float = 120, **fields: Any
    ) -> httpx.Response:
        """POST a non-stream ``chat_body(content, **fields)`` to /v1/chat/completions."""
        return httpx.post(
            self.url + "/v1/chat/completions", json=chat_body(content, **fields), headers=headers, timeout=timeout
        )


def start_gateway(settings: Settings, wait_s: float = 300) -> RunningGateway:
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://{settings.host}:{settings.port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return RunningGateway(url, settings, server, thread)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.should_exit = True
    raise RuntimeError("gateway did not become ready")


def stop_gateway(gw: RunningGateway) -> None:
    gw.server.should_exit = True
    gw.thread.join(timeout=30)


@pytest.fixture(scope="session")
def gateway_settings(redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tmp = tmp_path_factory.mktemp("gateway")
    return Settings(
        port=free_port(),
        redis_url=redis_server.url,
        admin_key=ADMIN_KEY,
        # The converted-model cache is shared with `make run`, so only the first start converts.
        data_dir=Path(".stopgate"),
        audit_log=tmp / "audit.jsonl",
    )


@pytest.fixture(scope="session")
def gateway(gateway_settings: Settings) -> Iterator[RunningGateway]:
    gw = start_gateway(gateway_settings)
    yield gw
    stop_gateway(gw)


@pytest.fixture(scope="session")
def worker_server() -> Iterator[str]:
    """A real `stopgate worker` app on uvicorn, on a free loopback port (one for the whole session)."""
    settings = Settings(port=free_port(), data_dir=Path(".stopgate"))
    server = uvicorn.Server(
        uvicorn.Config(create_worker_app(settings), host="127.0.0.1", port=settings.port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).json().get("ready"):
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    yield url
    server.should_exit = True
    thread.join(30)
