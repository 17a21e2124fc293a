"""``stopgate bench throughput``: the gateway's streaming rate against plain ``model.generate``.

Measured side by side in one run, same model, prompt, greedy decoding and token count:
1. direct: ``model.generate`` in this process (best of ``--repeats``);
2. one stream through a real ``stopgate serve`` subprocess on loopback, stopping rules off;
3. eight concurrent streams through it (aggregate tokens/s);
4. TTFT p50: direct prefill + first token vs the first content chunk over HTTP, the two taken
   in turn (the direct model stays loaded, idle while the gateway works).

Each client thread keeps one ``httpx.Client`` (a kept-alive connection, as the OpenAI SDK does):
building a client costs ~20 ms here (its SSL context), which is the caller's cost, not the
gateway's, and would otherwise be counted in every TTFT.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.bench.server import serve
from gateway.cli.common import add_settings_flags, settings_from_args
from gateway.settings import Settings

PROMPT = "Write a long story about a dragon who learns to fly."
TTFT_SAMPLES = 9


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", type=int, default=128, help="tokens per generation")
    parser.add_argument("--streams", type=int, default=8, help="concurrent streams")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    add_settings_flags(parser, only=("model", "device", "data_dir"))


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    direct = DirectModel(settings.model, settings.device, settings.data_dir)
    figures: dict[str, float] = {"direct_tok_s": direct.rate(args.tokens, args.repeats)}
    figures.update(_through_gateway(settings, args, direct))
    figures["single_vs_direct"] = figures["gateway_single_tok_s"] / figures["direct_tok_s"]
    figures["aggregate_vs_single"] = figures["gateway_aggregate_tok_s"] / figures["gateway_single_tok_s"]
    figures["ttft_overhead_ms"] = figures["gateway_ttft_p50_ms"] - figures["direct_ttft_p50_ms"]
    _print(figures, args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


class DirectModel:
    """Plain ``model.generate`` in this process: the reference the gateway is measured against."""

    def __init__(self, model: str, device: str, data_dir: Path) -> None:
        import torch

        from gateway.worker.model import load_model

        self._torch = torch
        self.loaded = load_model(model, device, data_dir)
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


def _through_gateway(settings: Settings, args: argparse.Namespace, direct: DirectModel) -> dict[str, float]:
    env = {"STOPGATE_MAX_CONCURRENT_STREAMS": str(max(64, args.streams * 2))}
    with (
        tempfile.TemporaryDirectory(prefix="stopgate-bench-") as tmp,
        serve(settings, Path(tmp) / "gateway.log", env) as gateway,
    ):
        url = gateway.url
        headers = {"x-stopgate-admin-key": gateway.admin_key, "x-stopgate-policy": "off"}
        client = httpx.Client(timeout=600)
        mid = client.get(url + "/v1/models").json()["data"][0]["id"]
        body = {
            "model": mid,
            "max_tokens": args.tokens,
            "temperature": 0,
            "messages": [{"role": "user", "content": PROMPT}],
        }
        _stream(client, url, body, headers)  # warm-up
        singles = [_stream(client, url, body, headers) for _ in range(args.repeats)]
        # TTFT: direct and gateway alternate, so a slow spell of a shared machine hits both alike.
        direct_ttfts, ttfts = [], []
        for _ in range(TTFT_SAMPLES):
            direct_ttfts.append(direct.ttft_ms())
            ttfts.append(_stream(client, url, {**body, "max_tokens": 2}, headers)["ttft_ms"])
        clients = [httpx.Client(timeout=600) for _ in range(args.streams)]
        for c in clients:
            c.get(url + "/healthz")  # open the connection before the clock starts
        results: list[dict[str, Any]] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            b = {**body, "messages": [{"role": "user", "content": f"{PROMPT} Story #{i}."}]}
            r = _stream(clients[i], url, b, headers)
            with lock:
                results.append(r)

        t = time.perf_counter()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(args.streams)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        for c in (client, *clients):
            c.close()
    return {
        "direct_ttft_p50_ms": statistics.median(direct_ttfts),
        "gateway_single_tok_s": max(r["rate"] for r in singles),
        "gateway_single_tokens": singles[0]["tokens"],
        "gateway_aggregate_tok_s": sum(r["tokens"] for r in results) / wall,
        "gateway_ttft_p50_ms": statistics.median(ttfts),
    }


def _stream(client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """One streamed request: tokens, decode rate between first and last token, TTFT."""
    first = last = None
    tokens = 0
    t0 = time.perf_counter()
    with client.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}, headers=headers) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            choice = chunk["choices"][0] if chunk.get("choices") else {}
            if choice.get("delta", {}).get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
            if choice.get("finish_reason"):
                tokens = chunk["stopgate"]["completion_tokens"]
    rate = (tokens - 1) / (last - first) if first and last and last > first else 0.0
    return {"tokens": tokens, "rate": rate, "ttft_ms": ((first or t0) - t0) * 1000}


def _print(figures: dict[str, float], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"stopgate bench throughput ({args.tokens} tokens, greedy)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    targets = {"single_vs_direct": ">= 0.95", "aggregate_vs_single": ">= 4.0", "ttft_overhead_ms": "<= 20"}
    for key, value in figures.items():
        table.add_row(key, f"{value:.2f}", targets.get(key, ""))
    Console().print(table)
