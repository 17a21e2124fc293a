"""``stopgate bench ...``: benchmarks are commands, not timed tests (machines are shared and noisy).

Each benchmark lives in ``gateway/bench/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when its command runs.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "throughput": "direct generate vs the gateway: one stream, 8 concurrent streams, TTFT",
    "tradeoff": "tokens saved vs EM per domain, against full inference and a static budget",
    "reasoning": "thinking tokens saved vs answer agreement on recorded reasoning traces, vs a static budget",
    "classify": "domain classifier accuracy, confusion matrix and latency",
    "engine": "policy engine cost per token per rule",
    "policy-reload": "policy propagation between two replicas through Redis",
    "audit": "audit submit cost, throughput and a Redis-outage no-loss check",
    "load": "N concurrent streams for T seconds on loopback",
}


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks (see `stopgate bench -h`)")
    inner = bench.add_subparsers(dest="bench", required=True)
    for name, help_text in BENCHMARKS.items():
        module_name = f"gateway.bench.{name.replace('-', '_')}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        parser = inner.add_parser(name, help=help_text)
        module.add_arguments(parser)
        parser.set_defaults(handler=module.run)
