"""``stopgate serve``: the gateway on uvicorn, with a graceful drain on SIGTERM / SIGINT.

uvicorn's own shutdown closes the listening socket and waits for open connections; on top of it the
first signal starts ``gateway.drain.Drain`` (``/readyz`` 503, new requests 503, running streams get
``STOPGATE_DRAIN_SECONDS`` to finish, then an error frame and ``[DONE]``). The process then exits 0:
a drained shutdown is a clean one (uvicorn would re-raise the signal and die of it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from gateway.cli.common import add_settings_flags, settings_from_args

if TYPE_CHECKING:
    import uvicorn
    from litestar import Litestar

    from gateway.settings import Settings

SHUTDOWN_GRACE_S = 20
"""uvicorn's own deadline is the drain's plus this: time for the error frames and the lifespan's start."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="serve the gateway (OpenAI-compatible API)")
    add_settings_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.drain import Drain
    from gateway.logs import adopt_library_loggers, configure_logging

    settings = settings_from_args(args)
    configure_logging(settings.log_level, log_prompts=settings.log_prompts, fmt=settings.log_format)
    app = create_app(settings)
    adopt_library_loggers()  # Litestar applied its own logging config while the app was built
    drain = Drain(app_services(app), settings.drain_seconds)
    app.state.drain = drain  # /readyz reads it
    grace = settings.drain_seconds + SHUTDOWN_GRACE_S
    serve(app, settings, grace, on_signal=drain.begin)
    return 0


def app_services(app: Litestar) -> Any:
    """The app's ``Services`` container (the value its ``services`` dependency provides)."""
    found = app.state.get("services")
    if found is not None:
        return found
    provide: Any = app.dependencies["services"]
    return provide.dependency()


def serve(app: Any, settings: Settings, grace_s: float, *, on_signal: Callable[[], None] | None = None) -> None:
    """Run ``app`` until a signal; ``on_signal`` runs on the event loop at the first one."""
    from gateway.http.transport import server_config

    config = server_config(
        app, settings.host, settings.port, grace_s=grace_s, body_deadline_s=settings.body_timeout_seconds
    )
    _graceful_server(config, on_signal).run()


def _graceful_server(config: uvicorn.Config, on_signal: Callable[[], None] | None) -> uvicorn.Server:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's server that calls ``on_signal`` at the first signal and exits 0 after draining."""

        _loop: asyncio.AbstractEventLoop | None = None

        async def serve(self, sockets: Any = None) -> None:
            self._loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:
            first = not self.should_exit
            super().handle_exit(sig, frame)
            if first and on_signal is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(on_signal)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                # Drained and closed: exit with status 0 instead of re-raising the signal.
                self._captured_signals.clear()

    return GracefulServer(config)
