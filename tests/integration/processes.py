"""Real ``stopgate`` processes for the drain and chaos tests: started on free loopback ports, ended by id.

Each process gets its own data dir whose ``models``, ``tokenizers`` and ``cache`` link to the checkout's
``.stopgate`` (the converted model is reused, never downloaded); logs go to a file the test can read.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
STOPGATE = [sys.executable, "-m", "gateway.cli"]
ADMIN = "proc-admin-key"
MODEL = "smollm2-135m-instruct"


def data_dir(base: Path) -> Path:
    """A fresh data dir sharing the checkout's converted model."""
    base.mkdir(parents=True, exist_ok=True)
    for part in ("models", "tokenizers", "cache"):
        shared = ROOT / ".stopgate" / part
        if shared.exists() and not (base / part).exists():
            (base / part).symlink_to(shared, target_is_directory=True)
    return base


@dataclass
class Proc:
    """A ``stopgate`` child process in its own process group."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proc:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [*STOPGATE, *self.args, "--port", str(self.port)],
            env={**os.environ, **self.env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(self, path: str = "/readyz", within: float = 300) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.args[0]} exited early: {self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise AssertionError(f"{self.args[0]} not ready in {within}s: {self.tail()}")

    def tail(self, n: int = 8) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def signal(self, sig: int) -> None:
        """To the process itself (as an orchestrator does), not its group."""
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, sig)

    def wait(self, within: float) -> int:
        assert self.popen is not None
        return self.popen.wait(within)

    def stop(self) -> None:
        """End the whole group by id, whatever state it is in."""
        if self.popen is None:
            return
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if self.popen.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # anything it left in its group


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], tmp: Path, name: str, ready: str = "/readyz") -> Iterator[Proc]:
    proc = Proc(args, env, tmp / f"{name}.log", free_port()).start()
    try:
        proc.wait_ready(ready)
        yield proc
    finally:
        proc.stop()


def gateway_env(tmp: Path, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "STOPGATE_REDIS_URL": redis_url,
        "STOPGATE_ADMIN_KEY": ADMIN,
        "STOPGATE_DATA_DIR": str(data_dir(tmp / "data")),
        "STOPGATE_AUDIT_LOG": str(tmp / "audit.jsonl"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@dataclass
class StreamState:
    """What one streamed request saw: status, request id, content, whether it ended with [DONE]."""

    status: int | None = None
    request_id: str | None = None
    text: str = ""
    done: bool = False
    error: dict[str, Any] | None = None
    finish_reason: str | None = None
    exc: str | None = None
    first: threading.Event = field(default_factory=threading.Event)

    @property
    def well_formed(self) -> bool:
        """Ended with [DONE], after either a finish_reason or one error frame."""
        return self.done and (self.finish_reason is not None or self.error is not None)


def stream_chat(url: str, content: str, state: StreamState, max_tokens: int = 200, policy_off: bool = True) -> None:
    headers = {"x-stopgate-admin-key": ADMIN, "x-stopgate-policy": "off"} if policy_off else {}
    body = {
        "model": MODEL,
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": content}],
    }
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=headers, timeout=180) as r:
            state.status, state.request_id = r.status_code, r.headers.get("x-stopgate-request-id")
            for line in r.iter_lines():
                data = line[5:].strip() if line.startswith("data:") else ""
                if data == "[DONE]":
                    state.done = True
                    break
                if not data:
                    continue
                chunk = json.loads(data)
                state.error = state.error or chunk.get("error")
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if piece:
                        state.text += piece
                        state.first.set()
                    state.finish_reason = state.finish_reason or choice.get("finish_reason")
    except (httpx.HTTPError, ValueError) as exc:
        state.exc = repr(exc)[:200]
    finally:
        state.first.set()


def start_streams(url: str, prompts: list[str], **kw: Any) -> tuple[list[StreamState], list[threading.Thread]]:
    states = [StreamState() for _ in prompts]
    threads = [
        threading.Thread(target=stream_chat, args=(url, p, s), kwargs=kw, daemon=True)
        for p, s in zip(prompts, states, strict=True)
    ]
    for t in threads:
        t.start()
    return states, threads


def audit_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["request_id"] for line in path.read_text().splitlines() if line.strip()}
