"""``stopgate worker --port P``: the model worker as its own OpenAI-compatible server."""

from __future__ import annotations

import argparse

from gateway.cli.common import add_settings_flags, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("worker", help="serve the model alone (OpenAI-compatible, with logprobs)")
    add_settings_flags(parser, only=("host", "port", "model", "device", "data_dir", "max_batch_size", "log_level"))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_worker_app
    from gateway.audit.logging import configure_logging

    settings = settings_from_args(args)
    configure_logging(settings.log_level)
    uvicorn.run(
        create_worker_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0
