"""``stopgate serve``: the gateway on uvicorn."""

from __future__ import annotations

import argparse

from gateway.cli.common import add_settings_flags, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="serve the gateway (OpenAI-compatible API)")
    add_settings_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.audit.logging import configure_logging

    settings = settings_from_args(args)
    configure_logging(settings.log_level, log_prompts=settings.log_prompts)
    app = create_app(settings)
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False, timeout_graceful_shutdown=5
    )
    return 0
