"""``stopgate worker --port P``: the model worker as its own OpenAI-compatible server.

SIGTERM: uvicorn stops accepting and lets running streams finish (up to ``STOPGATE_DRAIN_SECONDS``),
then the process exits 0.
"""

from __future__ import annotations

import argparse

from gateway.cli.common import add_settings_flags, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("worker", help="serve the model alone (OpenAI-compatible, with logprobs)")
    add_settings_flags(parser, only=("host", "port", "model", "device", "data_dir", "max_batch_size", "log_level"))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gateway.app import create_worker_app
    from gateway.cli.serve import serve
    from gateway.logs import adopt_library_loggers, configure_logging

    settings = settings_from_args(args)
    configure_logging(settings.log_level, fmt=settings.log_format)
    app = create_worker_app(settings)
    adopt_library_loggers()  # Litestar applied its own logging config while the app was built
    serve(app, settings, settings.drain_seconds)
    return 0
