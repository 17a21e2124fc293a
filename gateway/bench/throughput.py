"""``stopgate bench throughput``: the embedded worker's streaming rate, against plain ``model.generate``
and, with ``--against vllm|llama.cpp --engine-url URL``, against a peer engine serving the same model.

Measured side by side in one run, same prompt, greedy decoding and token count:
1. direct: ``model.generate`` in this process (best of ``--repeats``);
2. one stream through a real ``stopgate serve`` subprocess on loopback, stopping rules off;
3. ``--streams`` concurrent streams through it (aggregate tokens/s);
4. TTFT p50: direct prefill + first token vs the first content chunk over HTTP. Each sample asks a
   different question (``ttft_prompt``), so what a prefix cache can reuse is the chat template's
   head, as between different users' requests, not a whole repeated prompt;
5. the peer engine (when given): the same single stream, concurrent streams and TTFT, straight to
   its OpenAI API. Single streams and TTFT samples of the gateway and the engine are taken in
   turn, so a slow spell of a shared machine hits both alike; the ratios are the figures to read.

Each client thread keeps one ``httpx.Client`` (a kept-alive connection, as the OpenAI SDK does):
building a client costs ~20 ms here (its SSL context), which is the caller's cost, not the
gateway's, and would otherwise be counted in every TTFT.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway.bench.server import serve
from gateway.errors import ConfigError
from gateway.settings import Settings

PROMPT = "Write a long story about a dragon who learns to fly."
TTFT_SAMPLES = 9
PEERS = ("vllm", "llama.cpp")
SETTINGS = ("model", "device", "dtype", "data_dir")


@dataclass(frozen=True)
class Options:
    tokens: int = field(default=128, metadata={"help": "tokens per generation"})
    streams: int = field(default=8, metadata={"help": "concurrent streams"})
    repeats: int = field(default=3, metadata={"help": "single-stream runs each way"})
    against: str | None = field(default=None, metadata={"help": "a peer engine to measure too: vllm or llama.cpp"})
    engine_url: str | None = field(default=None, metadata={"help": "the peer engine's base URL (with --against)"})
    json: Path | None = field(default=None, metadata={"help": "write the figures here"})


def run(options: Options, settings: Settings) -> int:
    if (options.against is None) != (options.engine_url is None):
        raise ConfigError("--against and --engine-url go together")
    if options.against is not None and options.against not in PEERS:
        raise ConfigError(f"--against must be one of {', '.join(PEERS)}")
    direct = DirectModel(settings)
    figures: dict[str, Any] = {
        "dtype": direct.dtype,
        "threads": direct.threads,
        "load_average_1m": _load(),
        "direct_tok_s": direct.rate(options.tokens, options.repeats),
    }
    peer = Peer(options.engine_url, options.against) if options.engine_url and options.against else None
    figures.update(_measure(settings, options, direct, peer))
    figures["single_vs_direct"] = figures["gateway_single_tok_s"] / figures["direct_tok_s"]
    figures["aggregate_vs_single"] = figures["gateway_aggregate_tok_s"] / figures["gateway_single_tok_s"]
    figures["ttft_overhead_ms"] = figures["gateway_ttft_p50_ms"] - figures["direct_ttft_p50_ms"]
    if peer is not None:
        figures["single_vs_engine"] = figures["gateway_single_tok_s"] / figures["engine_single_tok_s"]
        figures["aggregate_vs_engine"] = figures["gateway_aggregate_tok_s"] / figures["engine_aggregate_tok_s"]
        figures["ttft_vs_engine_ms"] = figures["gateway_ttft_p50_ms"] - figures["engine_ttft_p50_ms"]
    figures["load_average_1m_after"] = _load()
    _print(figures, options)
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


class DirectModel:
    """Plain ``model.generate`` in this process: the reference the gateway is measured against."""

    def __init__(self, settings: Settings) -> None:
        import torch

        from gateway.worker.model import load_model

        self._torch = torch
        self.loaded = load_model(settings.model, settings.device, settings.data_dir, settings.dtype)
        self.dtype = str(self.loaded.dtype).removeprefix("torch.")
        self.threads = int(torch.get_num_threads())
        tok = self.loaded.tokenizer
        text = tok.apply_chat_template(
            [{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False
        )
        self.ids = torch.tensor([tok.encode(text, add_special_tokens=False)], device=self.loaded.device)
        self._generate(8)  # warm-up

    def _generate(self, n: int) -> int:
        with self._torch.inference_mode():
            out = self.loaded.model.generate(self.ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return int(out.shape[1] - self.ids.shape[1])

    def rate(self, n: int, repeats: int) -> float:
        """Best tokens/s of ``repeats`` greedy generations of ``n`` tokens."""
        rates = []
        for _ in range(repeats):
            t = time.perf_counter()
            made = self._generate(n)
            rates.append(made / (time.perf_counter() - t))
        return max(rates)

    def ttft_ms(self) -> float:
        """Prefill plus the first token."""
        t = time.perf_counter()
        self._generate(1)
        return (time.perf_counter() - t) * 1000


@dataclass
class Target:
    """One OpenAI-compatible endpoint: where, as whom, and what to add to every body."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str]
    tokens_of: Callable[[dict[str, Any]], int | None]


class Peer:
    """A peer engine (vLLM, llama.cpp's server) serving the same model on ``url``."""

    def __init__(self, url: str, kind: str) -> None:
        self.url = url.rstrip("/")
        self.kind = kind

    def target(self, body: dict[str, Any], tokens: int) -> Target:
        model = httpx.get(self.url + "/v1/models", timeout=30).json()["data"][0]["id"]
        extra: dict[str, Any] = {"stream_options": {"include_usage": True}}
        if self.kind == "vllm":
            extra |= {"min_tokens": tokens, "ignore_eos": True}  # exactly the gateway's token count
        else:
            extra |= {"repeat_penalty": 1.0}  # its default 1.1 is not greedy
        return Target(self.url, {**body, "model": model, **extra}, {}, _usage_tokens)


def _measure(settings: Settings, options: Options, direct: DirectModel, peer: Peer | None) -> dict[str, float]:
    env = {"STOPGATE_MAX_CONCURRENT_STREAMS": str(max(64, options.streams * 2)), "STOPGATE_DTYPE": settings.dtype}
    with (
        tempfile.TemporaryDirectory(prefix="stopgate-bench-") as tmp,
        serve(settings, Path(tmp) / "gateway.log", env) as gateway,
    ):
        client = httpx.Client(timeout=600)
        mid = client.get(gateway.url + "/v1/models").json()["data"][0]["id"]
        body = {
            "model": mid,
            "max_tokens": options.tokens,
            "temperature": 0,
            "messages": [{"role": "user", "content": PROMPT}],
        }
        ours = Target(
            gateway.url,
            body,
            {"x-stopgate-admin-key": gateway.admin_key, "x-stopgate-policy": "off"},
            lambda chunk: chunk.get("stopgate", {}).get("completion_tokens"),
        )
        theirs = peer.target(body, options.tokens) if peer else None
        targets = [t for t in (ours, theirs) if t is not None]
        for t in targets:
            _stream(client, t, {})  # warm-up
        singles: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(targets))}
        for _ in range(options.repeats):
            for i, t in enumerate(targets):
                singles[i].append(_stream(client, t, {}))
        # TTFT: direct, gateway and engine alternate.
        direct_ttfts: list[float] = []
        ttfts: dict[int, list[float]] = {i: [] for i in range(len(targets))}
        for k in range(TTFT_SAMPLES):
            direct_ttfts.append(direct.ttft_ms())
            short = {"max_tokens": 2, "min_tokens": 2, "messages": [{"role": "user", "content": ttft_prompt(k)}]}
            for i, t in enumerate(targets):
                ttfts[i].append(_stream(client, t, short)["ttft_ms"])
        aggregates = [_concurrent(t, options.streams) for t in targets]
        client.close()
    out = {
        "direct_ttft_p50_ms": statistics.median(direct_ttfts),
        "gateway_single_tok_s": max(r["rate"] for r in singles[0]),
        "gateway_single_tokens": singles[0][0]["tokens"],
        "gateway_aggregate_tok_s": aggregates[0],
        "gateway_ttft_p50_ms": statistics.median(ttfts[0]),
    }
    if theirs is not None:
        out |= {
            "engine_single_tok_s": max(r["rate"] for r in singles[1]),
            "engine_single_tokens": singles[1][0]["tokens"],
            "engine_aggregate_tok_s": aggregates[1],
            "engine_ttft_p50_ms": statistics.median(ttfts[1]),
        }
    return out


def _concurrent(target: Target, streams: int) -> float:
    """Aggregate tokens/s of ``streams`` concurrent streams with distinct prompts."""
    clients = [httpx.Client(timeout=600) for _ in range(streams)]
    for c in clients:
        c.get(target.url + "/v1/models")  # open the connection before the clock starts
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        r = _stream(clients[i], target, {"messages": [{"role": "user", "content": f"{PROMPT} Story #{i}."}]})
        with lock:
            results.append(r)

    t = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    for c in clients:
        c.close()
    return sum(r["tokens"] for r in results) / wall


def ttft_prompt(k: int) -> str:
    """The ``k``-th TTFT sample's question: the same length as ``PROMPT``, differing from the others
    from its first token on."""
    return f"{k % 10}. {PROMPT}"


def _stream(client: httpx.Client, target: Target, override: dict[str, Any]) -> dict[str, Any]:
    """One streamed request: tokens, decode rate between first and last token, TTFT."""
    body = {**target.body, **override, "stream": True}
    if "min_tokens" in override and "min_tokens" not in target.body:
        del body["min_tokens"]  # only engines that took it at all get it
    first = last = None
    tokens = chunks = 0
    t0 = time.perf_counter()
    with client.stream("POST", target.url + "/v1/chat/completions", json=body, headers=target.headers) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            choice = chunk["choices"][0] if chunk.get("choices") else {}
            if choice.get("delta", {}).get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
            counted = target.tokens_of(chunk)
            if counted:
                tokens = counted
    tokens = tokens or chunks
    rate = (tokens - 1) / (last - first) if first and last and last > first else 0.0
    return {"tokens": tokens, "rate": rate, "ttft_ms": ((first or t0) - t0) * 1000}


def _usage_tokens(chunk: dict[str, Any]) -> int | None:
    usage = chunk.get("usage") or {}
    return usage.get("completion_tokens")


def _load() -> float:
    """The 1-minute load average: how shared the machine was (ratios hold better than absolutes)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def _print(figures: dict[str, Any], options: Options) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"stopgate bench throughput ({options.tokens} tokens, greedy, {options.streams} streams)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    targets = {
        "single_vs_direct": ">= 0.95",
        "aggregate_vs_single": ">= 4.0",
        "ttft_overhead_ms": "<= 20",
        "single_vs_engine": ">= 1.0",
        "aggregate_vs_engine": ">= 1.0",
        "gateway_ttft_p50_ms": "<= 60",
    }
    for key, value in figures.items():
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        table.add_row(key, shown, targets.get(key, ""))
    Console().print(table)
