"""``stopgate bench ...``: benchmarks are commands, not timed tests (machines are shared and noisy).

Each benchmark lives in ``gateway/bench/<name>.py`` and is registered here by one line in
``BENCHMARKS``. The module is typed library code, it never sees argparse:

- ``Options``: a frozen dataclass; each field is a ``--kebab-case`` flag (see
  ``gateway.cli.common.add_option_flags``: no default = required, ``bool`` = switch, help from
  ``field(metadata={"help": ...})``);
- ``SETTINGS``: the ``Settings`` fields offered as flags (``--model``, ``--data-dir``, ...);
- ``run(options, settings) -> int``: the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from types import ModuleType
from typing import Any

from gateway.cli.common import add_option_flags, add_settings_flags, options_from_args, settings_from_args

BENCHMARKS = {
    "throughput": "direct generate vs the gateway: one stream, 8 concurrent streams, TTFT",
    "tradeoff": "tokens saved vs EM per domain, against full inference and a static budget",
    "reasoning": "thinking tokens saved vs answer agreement on recorded reasoning traces, vs a static budget",
    "classify": "domain classifier accuracy, confusion matrix and latency",
    "engine": "policy engine cost per token per rule",
    "policy-reload": "policy propagation between two replicas through Redis",
    "audit": "audit submit cost, throughput and a Redis-outage no-loss check",
    "load": "N concurrent streams for T seconds on loopback",
    "overhead": "TTFT and throughput added in front of a real engine; relay capacity against a synthetic upstream",
    "agreement": "two trade-off runs' answers compared (e.g. fp32 against bf16): identical shares per domain",
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
        add_option_flags(parser, module.Options)
        add_settings_flags(parser, only=getattr(module, "SETTINGS", ()))
        parser.set_defaults(handler=_typed_handler(module))


def _typed_handler(module: ModuleType) -> Any:
    def handler(args: argparse.Namespace) -> int:
        options, settings = options_from_args(module.Options, args), settings_from_args(args)
        if threading.current_thread() is not threading.main_thread():  # e.g. called from a test's thread
            return int(module.run(options, settings))
        # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the gateway/Redis/engine processes a benchmark
        # started are stopped by their context managers instead of left running.
        previous = signal.signal(signal.SIGTERM, _exit_on_term)
        try:
            return int(module.run(options, settings))
        finally:
            signal.signal(signal.SIGTERM, previous)

    return handler


def _exit_on_term(signum: int, frame: object) -> None:
    sys.exit(128 + signum)
