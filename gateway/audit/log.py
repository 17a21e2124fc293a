"""``AuditLog``: takes one record per request without blocking and delivers it to every sink.

``submit`` only puts the record on a bounded in-memory queue (or, when that is full, parks it in the
on-disk spill): it never blocks, never raises, and costs a few microseconds, so the token hot path
never waits for I/O. One background task takes batches off the queue, encodes them and hands them
to ``gateway.audit.delivery`` (hash chain, JSON lines file, Redis Stream; spill and replay while
Redis is unreachable). Spill segments outlive the process: the next ``AuditLog`` on the same
``spill_dir`` delivers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import structlog

from gateway.audit.chain import Chain
from gateway.audit.delivery import Delivery
from gateway.audit.filters import AuditFilter, QueryResult
from gateway.audit.query import query_file
from gateway.audit.record import AuditRecord, encode_record
from gateway.audit.sinks import Item, JsonLinesSink
from gateway.audit.spill import Spill
from gateway.audit.stream import DEFAULT_STREAM_KEY, RedisStreamSink
from gateway.errors import ConfigError
from gateway.redis import REDIS_ERRORS

log = structlog.get_logger("stopgate.audit")


class AuditLog:
    """The audit trail of one process: ``await start()``, ``submit()`` per request, ``await close()``."""

    def __init__(
        self,
        jsonl_path: Path,
        redis_url: str | None,
        spill_dir: Path,
        stream_maxlen: int = 100_000,
        queue_size: int = 10_000,
        *,
        stream_key: str = DEFAULT_STREAM_KEY,
        dedup_ttl_s: int = 86_400,
        retry_interval_s: float = 1.0,
        redis_timeout_s: float = 2.0,
        batch_size: int = 256,
        writer_id: str | None = None,
    ) -> None:
        self.jsonl_path = Path(jsonl_path)
        self._queue: asyncio.Queue[AuditRecord | None] = asyncio.Queue(maxsize=queue_size)
        self._jsonl = JsonLinesSink(self.jsonl_path)
        self._chain = Chain(writer_id)
        self._stream: RedisStreamSink | None = None
        if redis_url:
            self._stream = RedisStreamSink(
                redis_url, key=stream_key, maxlen=stream_maxlen, dedup_ttl_s=dedup_ttl_s, timeout_s=redis_timeout_s
            )
        self._spill = Spill(Path(spill_dir))
        self._delivery = Delivery(
            self._jsonl,
            self._chain,
            self._stream,
            self._spill,
            retry_interval_s=retry_interval_s,
            batch_size=batch_size,
        )
        self._batch_size = batch_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._unencodable = 0

    @property
    def writer_id(self) -> str:
        return self._chain.writer

    @property
    def written(self) -> int:
        """Records delivered to every sink (for /metrics)."""
        return self._delivery.written

    @property
    def duplicates(self) -> int:
        """Records the stream already held when they were replayed."""
        return self._delivery.duplicates

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        try:
            self._jsonl.open()
            self._spill.open()
        except OSError as exc:
            raise ConfigError(f"cannot open the audit log {self.jsonl_path} or spill dir: {exc}") from exc
        await self._delivery.ping()
        self._task = self._loop.create_task(self._run(), name="stopgate-audit-writer")

    async def close(self, timeout_s: float = 30.0) -> None:
        """Deliver everything queued (to disk if Redis is down), then release files and connections."""
        if self._closed:
            return
        self._closing = True
        if self._task is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)  # wakes the writer if it waits
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        leftovers = []
        while not self._queue.empty():
            record = self._queue.get_nowait()
            if record is not None:
                leftovers.append(record)
        self._closed = True
        self._spill_records(leftovers)
        self._jsonl.close()
        self._spill.close()
        if self._stream is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._stream.close()

    # ---- the request side --------------------------------------------------------------------

    def submit(self, record: AuditRecord) -> None:
        """Hand over one request's record. Never blocks, never raises; safe from any thread."""
        try:
            if self._closed:
                self._spill_records([record])
            elif self._loop is not None and threading.get_ident() != self._thread_id:
                self._loop.call_soon_threadsafe(self._enqueue, record)
            else:
                self._enqueue(record)
        except Exception:
            self._enqueue_failed(record)

    def _enqueue(self, record: AuditRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._spill_records([record])
        except Exception:
            self._enqueue_failed(record)

    def _enqueue_failed(self, record: AuditRecord) -> None:
        try:
            self._spill_records([record])
        except Exception:
            self._spill.failed += 1
            log.exception("audit_record_lost", request_id=getattr(record, "request_id", None))

    def _spill_records(self, records: list[AuditRecord]) -> None:
        """Park records owed to every sink on disk; the writer (this process's or the next) delivers them."""
        if records:
            # With no writer left here, release the segment so that the next process claims it at once.
            self._spill.park("pending", self._encode(records), release=self._closed)

    def _encode(self, records: list[AuditRecord]) -> list[Item]:
        """Encode each record; one the pipeline filled with an unencodable value is counted and logged."""
        items = []
        for record in records:
            try:
                items.append((record.request_id, encode_record(record)))
            except Exception as exc:
                self._unencodable += 1
                log.error(
                    "audit_record_unencodable",
                    request_id=getattr(record, "request_id", None),
                    error=f"{type(exc).__name__}: {exc}",
                )
        return items

    # ---- health and counters -----------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records accepted but not yet in every sink (queued in memory or spilled to disk)."""
        return self._queue.qsize() + self._spill.total

    @property
    def spilled(self) -> int:
        return self._spill.spilled

    @property
    def failed(self) -> int:
        return self._spill.failed + self._unencodable

    @property
    def corrupt(self) -> int:
        return self._spill.corrupt

    @property
    def healthy(self) -> bool:
        return self.degraded_reason is None

    @property
    def degraded_reason(self) -> str | None:
        if self._task is None:
            return "audit log not started"
        if self._task.done() and not self._closing:
            return "audit writer stopped"
        if self._delivery.redis_error is not None:
            return f"redis unreachable for the audit stream ({self._delivery.redis_error}); records spilled to disk"
        backlog = self._spill.count("stream")
        if backlog:
            return f"{backlog} audit records waiting on disk for the Redis stream"
        return None

    def counters(self) -> dict[str, int]:
        return {
            "written": self.written,
            "spilled": self.spilled,
            "pending": self.pending,
            "duplicates": self.duplicates,
            "failed": self.failed,
            "corrupt": self.corrupt,
        }

    # ---- reading -----------------------------------------------------------------------------

    async def query(self, flt: AuditFilter) -> QueryResult:
        """Records matching ``flt`` from the Redis Stream; from the JSON lines file without Redis."""
        if self._stream is not None and self._delivery.redis_error is None:
            with contextlib.suppress(*REDIS_ERRORS):
                return await self._stream.query(flt)
        return await asyncio.to_thread(query_file, self.jsonl_path, flt)

    # ---- the writer task ---------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            batch: list[AuditRecord] = []
            items: list[Item] = []
            try:
                batch = await self._take_batch()
                if batch:
                    items = self._encode(batch)
                    batch = []  # from here on deliver() owns them (it spills them if cancelled)
                    await self._delivery.deliver(items)
                    items = []
                await self._delivery.housekeeping(self._queue_has_room)
                if self._closing and self._queue.empty():
                    return
            except asyncio.CancelledError:
                self._spill_records(batch)
                raise
            except Exception:
                log.exception("audit_writer_error")
                # A bug, not an outage: keep the records (a JSON lines duplicate beats a loss).
                self._spill_records(batch)
                self._spill.park("pending", items)
                await asyncio.sleep(0.1)

    async def _take_batch(self) -> list[AuditRecord]:
        q = self._queue
        batch: list[AuditRecord | None] = []
        if q.empty():
            timeout = self._wait_timeout()
            if timeout == 0:
                return []
            try:
                batch.append(await asyncio.wait_for(q.get(), timeout))
            except TimeoutError:
                return []
        while len(batch) < self._batch_size and not q.empty():
            batch.append(q.get_nowait())
        return [r for r in batch if r is not None]  # None only wakes the writer for close()

    def _wait_timeout(self) -> float | None:
        """How long the idle writer may sleep before housekeeping is due."""
        return 0 if self._closing else self._delivery.wait_timeout()

    def _queue_has_room(self) -> bool:
        """Pending spill is delivered only while the queue is under half full (live records first)."""
        return self._queue.qsize() < self._queue.maxsize // 2
