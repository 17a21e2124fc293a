"""The ``stopgate`` command: one argparse tree, one module per command group.

Each module in ``COMMANDS`` exposes ``register(subparsers)``; handlers take the parsed args
and return an exit status. ``StopgateError`` is translated here, once: message on stderr, exit 1.
Modules are imported lazily so that ``stopgate audit ...`` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import structlog

from gateway.errors import StopgateError

COMMANDS = ("serve", "worker", "classify", "policies", "audit", "bench", "calibrate", "autopilot")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stopgate", description="Streaming LLM gateway with per-domain stopping")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"gateway.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gateway.cli.{name}":
                continue  # command group not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not structlog.is_configured():
        # Logs go to stderr as JSON; stdout is for the command's own output. serve/worker set their level.
        from gateway.logs import configure_logging

        configure_logging("warning")
    try:
        status = args.handler(args)
    except StopgateError as exc:
        print(f"stopgate: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
