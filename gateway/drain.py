"""Graceful drain on SIGTERM: stop taking requests, let running streams finish, then end the rest.

``Drain.begin`` (from the signal, on the event loop): ``/readyz`` turns 503 ``draining`` at once and
the chat service refuses new requests (503); the server stops accepting connections. ``Drain.run``
waits up to ``deadline_s`` for the running streams, then ends whatever still runs with an error
frame and ``[DONE]`` (``ChatService.abort_all``) and waits briefly for those to be written. The
server's lifespan then closes the audit log (its queue flushed to the file and Redis, or the spill)
and stops the local Redis.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

log = structlog.get_logger(__name__)

ABORT_GRACE_S = 15.0
"""After ``abort_all``, how long the error frames get to be written before the server moves on: an
aborted stream ends at the worker's next step, which takes seconds on a starved CPU."""

REASON = "The gateway is shutting down; this stream was ended at the drain deadline."


class Drain:
    """One process's drain; ``services`` is the app's container (its ``chat`` may still be ``None``)."""

    def __init__(self, services: Any, deadline_s: float) -> None:
        self.services = services
        self.deadline_s = deadline_s
        self.draining = False
        self.started_at: float | None = None
        self.task: asyncio.Task[None] | None = None

    def begin(self) -> None:
        """Refuse new work from now on and start ``run`` in the background (once)."""
        if self.draining:
            return
        self.draining = True
        self.started_at = time.monotonic()
        chat = getattr(self.services, "chat", None)
        begin_drain = getattr(chat, "begin_drain", None)
        if callable(begin_drain):
            begin_drain()
        running = getattr(chat, "active_streams", 0)
        log.info("drain_started", deadline_s=self.deadline_s, running_streams=running)
        self.task = asyncio.get_running_loop().create_task(self.run(), name="stopgate-drain")

    async def run(self) -> None:
        chat = getattr(self.services, "chat", None)
        if chat is None:
            return
        wait_idle = getattr(chat, "wait_idle", None)
        if wait_idle is None or await wait_idle(self.deadline_s):
            log.info("drain_idle", seconds=self._elapsed())
            return
        abort_all = getattr(chat, "abort_all", None)
        ended = abort_all(REASON) if callable(abort_all) else 0
        log.warning("drain_deadline_passed", ended_streams=ended, seconds=self._elapsed())
        await wait_idle(ABORT_GRACE_S)

    def _elapsed(self) -> float:
        return round(time.monotonic() - (self.started_at or time.monotonic()), 3)
