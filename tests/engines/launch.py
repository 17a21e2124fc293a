"""Starting real engines (vLLM CPU, llama.cpp's server) on the embedded model, each from its own venv.

``make test-engines`` builds the venvs (``.venv-engines/vllm``, ``.venv-engines/llamacpp``); this
module finds the embedded model's weights in the shape each engine wants (vLLM: the safetensors
folder the local worker converts the GGUF into; llama.cpp: the GGUF itself) and runs the server
on a free loopback port until the tests are done. Also usable by hand:
``.venv/bin/python -m tests.engines.launch vllm`` prints the URL and serves until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.bench.server import wait_ready
from gateway.redis_server import free_port
from gateway.settings import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".venv-engines"
DATA_DIR = ROOT / ".stopgate"
START_TIMEOUT_S = 900  # vLLM takes ~80 s alone, much longer on a loaded machine


@dataclass(frozen=True)
class Engine:
    kind: str
    url: str
    log: Path
    pid: int


def converted_model_dir() -> Path:
    """The embedded model as a safetensors folder (made once by the local worker's loader)."""
    found = sorted((DATA_DIR / "models").glob(f"{DEFAULT_MODEL}-*/model.safetensors"))
    if not found:
        from gateway.worker.model import load_model

        load_model(DEFAULT_MODEL, "cpu", DATA_DIR)
        found = sorted((DATA_DIR / "models").glob(f"{DEFAULT_MODEL}-*/model.safetensors"))
    if not found:
        raise RuntimeError("the embedded model could not be converted to safetensors")
    return found[-1].parent


def gguf_path() -> Path:
    from gateway.worker.model import embedded_gguf

    return embedded_gguf()


def command(kind: str, port: int, extra: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The server command line and environment for ``kind``."""
    env = dict(os.environ)
    if kind == "vllm":
        python = VENVS / "vllm" / "bin" / "python"
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # the cores are shared with the tests
        cmd = [
            str(python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(converted_model_dir()),
            "--served-model-name",
            DEFAULT_MODEL,
            "--dtype",
            "bfloat16",
            "--max-model-len",
            "2048",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            "hermes",
            *(extra or []),
        ]
        return cmd, env
    if kind == "llamacpp":
        python = VENVS / "llamacpp" / "bin" / "python"
        script = Path(__file__).with_name("llamacpp_server.py")
        return [str(python), str(script), str(gguf_path()), str(port), *(extra or [])], env
    raise ValueError(f"unknown engine {kind!r}: vllm or llamacpp")


@contextlib.contextmanager
def running(kind: str, log: Path, extra: list[str] | None = None) -> Iterator[Engine]:
    """The engine serving the embedded model on a free loopback port; stopped on leaving."""
    port = free_port()
    cmd, env = command(kind, port, extra)
    if not Path(cmd[0]).exists():
        raise RuntimeError(f"{cmd[0]} is missing: run `make engines` first")
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        # Its own process group: vLLM's engine core and workers are children that must go with it.
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            wait_ready(url, proc, log, START_TIMEOUT_S, path="/v1/models", what=f"the {kind} engine")
            yield Engine(kind, url, log, proc.pid)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "vllm"
    log = Path(f"/tmp/stopgate-engine-{kind}.log")
    with running(kind, log, sys.argv[2:]) as engine:
        print(engine.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
