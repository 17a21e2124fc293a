"""What the benchmarks start for themselves: a ``stopgate serve`` subprocess, a local Redis."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.errors import ConfigError
from gateway.redis_server import LocalRedis, free_port
from gateway.settings import Settings


@dataclass(frozen=True)
class Gateway:
    url: str
    pid: int
    admin_key: str


@contextlib.contextmanager
def serve(settings: Settings, log_path: Path, env: Mapping[str, str], timeout: float = 300) -> Iterator[Gateway]:
    """``stopgate serve`` on a free loopback port with ``settings``' model, device and data dir.

    ``env`` adds ``STOPGATE_*`` variables; the server gets a fresh admin key. Yields once
    ``/readyz`` answers 200; the server is stopped on leaving. Its output goes to ``log_path``.
    """
    port, admin_key = free_port(), secrets.token_hex(8)
    url = f"http://127.0.0.1:{port}"
    full_env = {
        **os.environ,
        "STOPGATE_HOST": "127.0.0.1",
        "STOPGATE_PORT": str(port),
        "STOPGATE_ADMIN_KEY": admin_key,
        "STOPGATE_MODEL": settings.model,
        "STOPGATE_DEVICE": settings.device,
        "STOPGATE_DATA_DIR": str(settings.data_dir),
        **env,
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"], env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_ready(url, proc, log_path, timeout)
            yield Gateway(url, proc.pid, admin_key)
        finally:
            stop(proc, grace_s=30)


def stop(proc: subprocess.Popen[bytes], *, grace_s: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``grace_s``; reaped either way."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def wait_ready(
    url: str,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    timeout: float,
    *,
    path: str = "/readyz",
    what: str = "the gateway",
) -> None:
    """Poll ``url + path`` until it answers 200; a process that exits first, or the timeout, is a ConfigError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ConfigError(f"{what} exited at start with status {proc.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise ConfigError(f"{what} did not become ready within {timeout:.0f} s; see {log_path}")


@contextlib.contextmanager
def local_redis(directory: Path) -> Iterator[LocalRedis]:
    """A started ``LocalRedis`` under ``directory``, stopped on leaving."""
    server = LocalRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
