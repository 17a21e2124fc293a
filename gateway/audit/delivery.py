"""Where the audit writer puts each batch: sealed into the hash chain, appended to the JSON lines file,
then added to the Redis Stream; and what it does while Redis is unreachable.

Lines owed to the stream wait in the spill, in order, behind any backlog; a ping every
``retry_interval_s`` notices Redis again and the backlog is replayed (the stream deduplicates by
request_id, so replays never duplicate). Housekeeping also delivers records parked as ``pending``
(by a full queue, a closed log, or an ended process) and looks for left-behind segments every
``SCAN_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from gateway.audit.chain import Chain
from gateway.audit.sinks import Item, JsonLinesSink
from gateway.audit.spill import Spill
from gateway.audit.stream import RedisStreamSink
from gateway.redis import REDIS_ERRORS, describe_error

log = structlog.get_logger("stopgate.audit")

SCAN_INTERVAL_S = 30.0  # how often to look for spill segments that ended processes left behind


class Delivery:
    """The writer task's side of the sinks: delivery, Redis health, spill replay, and the counters."""

    def __init__(
        self,
        jsonl: JsonLinesSink,
        chain: Chain,
        stream: RedisStreamSink | None,
        spill: Spill,
        *,
        retry_interval_s: float,
        batch_size: int,
    ) -> None:
        self._jsonl, self._chain, self._stream, self._spill = jsonl, chain, stream, spill
        self._retry_interval_s = retry_interval_s
        self._batch_size = batch_size
        self.redis_error: str | None = None  # why the stream is unreachable; None while it answers
        self._next_retry = 0.0
        self._next_scan = 0.0
        self._stalled = False  # the last replay round could not make progress
        # Delivered to every sink / already in the stream when replayed.
        self.written = 0
        self.duplicates = 0

    async def ping(self) -> None:
        """At start: is the stream reachable? (Not: the lines go to the spill until it is.)"""
        if self._stream is not None:
            try:
                await self._stream.ping()
            except REDIS_ERRORS as exc:
                self._mark_down(exc)

    def wait_timeout(self) -> float:
        """How long the idle writer may sleep before housekeeping is due."""
        now = time.monotonic()
        due = self._next_scan
        if self._stream is not None and self.redis_error is not None:
            due = min(due, self._next_retry)
        elif self._spill.total:
            due = min(due, now + self._retry_interval_s) if self._stalled else now
        return max(0.0, due - now)

    async def deliver(self, items: list[Item]) -> bool:
        """Seal the items into the chain, append them to the file, then add them to the stream."""
        sealed = [(request_id, self._chain.seal(line)) for request_id, line in items]
        try:
            self._jsonl.write(sealed)
        except OSError:
            log.exception("audit_jsonl_write_failed", path=str(self._jsonl.path), records=len(sealed))
        if self._stream is None:
            self.written += len(sealed)
            return True
        if self.redis_error is not None or self._spill.count("stream"):
            self._spill.park("stream", sealed)  # behind the backlog: replayed in order
            return True
        try:
            added = await self._stream.add_many(sealed)
        except REDIS_ERRORS as exc:
            self._mark_down(exc)
            self._spill.park("stream", sealed)
            return True
        except asyncio.CancelledError:
            self._spill.park("stream", sealed)  # maybe added already: the replay deduplicates
            raise
        self.written += len(sealed)
        self.duplicates += len(sealed) - added
        return True

    async def housekeeping(self, queue_has_room: Callable[[], bool]) -> None:
        """Ping a down Redis when due, replay the stream backlog, deliver pending spill while the
        queue has room (``queue_has_room`` is asked after the replay, when it is current)."""
        now = time.monotonic()
        scan = now >= self._next_scan
        if scan:
            self._next_scan = now + SCAN_INTERVAL_S
        if self._stream is not None and self.redis_error is not None and now >= self._next_retry:
            try:
                await self._stream.ping()
            except REDIS_ERRORS as exc:
                self._mark_down(exc)
            else:
                self.redis_error = None
                log.info("audit_redis_reconnected", backlog=self._spill.count("stream"))
        progressed = True
        if self._stream is not None and self.redis_error is None and (scan or self._spill.count("stream")):
            progressed = await self._spill.drain("stream", self._replay_to_stream)
        if (scan or self._spill.count("pending")) and queue_has_room():
            progressed = await self._spill.drain("pending", self.deliver) and progressed
        self._stalled = not progressed

    async def _replay_to_stream(self, items: list[Item]) -> bool:
        """Lines already in the file (sealed), owed to the stream; False when Redis is down again."""
        if self._stream is None or self.redis_error is not None:
            return False
        for start in range(0, len(items), self._batch_size):
            chunk = items[start : start + self._batch_size]
            try:
                added = await self._stream.add_many(chunk)
            except REDIS_ERRORS as exc:
                self._mark_down(exc)
                return False
            self.written += len(chunk)
            self.duplicates += len(chunk) - added
        return True

    def _mark_down(self, exc: BaseException) -> None:
        if self.redis_error is None:
            log.warning("audit_redis_unreachable", error=describe_error(exc))
        self.redis_error = describe_error(exc)
        self._next_retry = time.monotonic() + self._retry_interval_s
