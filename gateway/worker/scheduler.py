"""Continuous batching over one batched KV cache, on a dedicated decode thread.

Every step of the loop: apply forced ends of thinking (``inject``), admit waiting requests
(prefill each, then splice its KV cache into the batch, left-padded), drop cancelled rows, run
ONE forward pass for all rows, sample one token per row, hand the events to their streams.
Requests join and leave between steps, so a cancelled request stops using compute within one
decode step and a new one waits at most one step.

Rows are left-padded to a common length (``gateway.worker.batch``); the 2-D attention mask hides
the padding (and the tokens a rewind took back) and explicit ``position_ids`` keep every row's
positions as if it ran alone, so greedy output matches a request decoded on its own. Appended tokens are fed one per
step like sampled ones (``gateway.worker.sequence``), so that holds for them too.

Idle for ``trim_idle_ms``, the thread hands the heap's free pages back (``gateway.worker.heap``).
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass

import structlog
import torch

from gateway.errors import WorkerError
from gateway.worker import heap
from gateway.worker.batch import Batch
from gateway.worker.cores import current_threads, pin_threads
from gateway.worker.detokenize import TokenTexts
from gateway.worker.model import LoadedModel
from gateway.worker.prefix_cache import PrefixCache
from gateway.worker.sampling import sample
from gateway.worker.sequence import Deliver, Item, Out, Sampled, Sequence

__all__ = ["AsyncioDeliver", "BatchScheduler", "Deliver", "Item", "Out", "Sequence"]

log = structlog.get_logger(__name__)

DEFAULT_TRIM_IDLE_MS = 500
"""``STOPGATE_HEAP_TRIM_IDLE_MS``: idle this long, the decode thread trims the heap (``gateway.worker.heap``).
A request that comes sooner finds its pages still mapped; the first one after a trim pays ~15-30 ms of
page faults here."""

DEFAULT_PREFIX_CACHE_MB = 64
"""``STOPGATE_PREFIX_CACHE_MB``: ~1,400 prompt tokens of SmolLM2-135M's fp32 KV (46 KB a token)."""


class BatchScheduler:
    def __init__(
        self,
        loaded: LoadedModel,
        max_batch: int = 16,
        threads: int | None = None,
        *,
        prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB,
        trim_idle_ms: int = DEFAULT_TRIM_IDLE_MS,
    ) -> None:
        self.loaded = loaded
        self.max_batch = max_batch
        self.threads = threads  # intra-op threads of the decode thread; None: the process default
        self._pinned = threading.Event()
        self.decode_threads: int | None = None  # what the decode thread runs with, once started
        self.tokens_generated = 0
        self._pending: collections.deque[Sequence] = collections.deque()
        self._injections: collections.deque[tuple[Sequence, int, list[int]]] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        tokenizer = getattr(loaded, "tokenizer", None)
        self._token_text = TokenTexts(tokenizer) if tokenizer is not None else str
        self.trim_idle_s = trim_idle_ms / 1000 if trim_idle_ms > 0 else None  # None: never trim
        self.prefixes = PrefixCache(prefix_cache_mb * 2**20) if prefix_cache_mb > 0 else None
        self._batch = Batch(loaded, self.prefixes)  # touched only by the decode thread

    # -- called from any thread -------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def active(self) -> int:
        return len(self._batch.rows)

    @property
    def prompt_tokens_reused(self) -> int:
        """Prompt tokens taken from the prefix cache instead of computed, since start."""
        return self.prefixes.reused_tokens if self.prefixes is not None else 0

    def start(self) -> None:
        caller_default = current_threads()
        self._thread = threading.Thread(target=self._run, name="stopgate-decode", daemon=True)
        self._thread.start()
        if self.threads is not None:
            # Pinning made the decode thread's count the process default; threads started later keep
            # the caller's (gateway.worker.cores: one OpenMP team per process).
            self._pinned.wait(timeout=30)
            pin_threads(caller_default)

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def submit(self, seq: Sequence) -> None:
        with self._wake:
            self._pending.append(seq)
            self._wake.notify()

    def inject(self, seq: Sequence, events: int, ids: list[int]) -> None:
        """Keep ``seq``'s first ``events`` events, append ``ids`` and continue (a forced end of
        thinking); applied by the decode thread before its next step."""
        with self._wake:
            self._injections.append((seq, events, ids))
            self._wake.notify()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify()

    # -- the decode thread ----------------------------------------------------------------------

    def _run(self) -> None:
        if self.threads is not None:
            pin_threads(self.threads)
        self.decode_threads = current_threads()
        self._pinned.set()
        with torch.inference_mode():
            dirty = False  # steps ran since the heap was last trimmed (never set when trimming is off)
            while True:
                with self._wake:
                    while not (self._stopping or self._has_work()):
                        if not self._wake.wait(self.trim_idle_s if dirty else None) and dirty:
                            break
                    stopping, work = self._stopping, self._has_work()
                if stopping:
                    break
                if not work:  # idle for a while: what the steps freed goes back to the OS
                    heap.trim()
                    dirty = False
                    continue
                dirty = self.trim_idle_s is not None
                try:
                    self._step()
                except Exception as exc:  # a broken step fails its requests, not the worker
                    log.exception("decode_step_failed")
                    self._fail_all(WorkerError(f"generation failed: {type(exc).__name__}: {exc}"))
        self._fail_all(WorkerError("worker is shutting down"))

    def _has_work(self) -> bool:
        return bool(self._pending or self._batch.rows or self._injections)

    def _step(self) -> None:
        admitted: Out = []
        decoded: Out = []
        try:
            self._apply_injections(admitted)
            self._admit(admitted)
            # New requests' first tokens go out now, not after the batch's next forward pass (TTFT).
            self._flush(admitted)
            self._decode_step(decoded)
        finally:
            self._flush(admitted)  # no-op unless admission itself failed part-way
            self._flush(decoded)

    def _apply_injections(self, out: Out) -> None:
        with self._wake:
            todo = list(self._injections)
            self._injections.clear()
        for seq, events, ids in todo:
            row = self._batch.row_of(seq)
            waiting = row is None and any(p is seq for p in self._pending)
            resumable = row is None and not waiting and seq.finish_reason in ("stop", "length")
            if seq.cancelled or not ids or not (row is not None or waiting or resumable):
                # The stream now drops older items: it needs this epoch's end (again, if it had one).
                seq.epoch += 1
                if seq.ended:
                    out.append((seq, seq.error, seq.epoch))
                continue
            drop = seq.rewind(events, ids)
            if row is not None and drop:
                self._batch.hide_newest(row, drop)  # the taken-back tokens
            if len(seq.tail) >= seq.params.max_tokens:
                seq.ended = False  # a new epoch: the stream needs its end again
                seq.finish("length", out)  # a row leaves the batch at the next step
            elif resumable:
                seq.reopen()
                self._pending.appendleft(seq)  # prefilled again, prompt + tail

    def _admit(self, out: Out) -> None:
        # 1. admit waiting requests while there is room: prefill alone, sample the next token, splice in.
        while self._pending and len(self._batch.rows) < self.max_batch:
            seq = self._pending.popleft()
            if seq.ended:
                continue
            if seq.cancelled:
                seq.finish("cancelled", out)
                continue
            try:
                cache, logits, reused = self._batch.prefill([*seq.prompt_ids, *seq.tail])
                if not seq.tail:  # a first prefill, not a resumed one
                    seq.cached_tokens = reused
                seq.in_kv = len(seq.tail)
                (sampled,) = sample(logits, [seq], self._token_text)
            except Exception as exc:  # this request alone fails; it is in neither queue nor batch now
                log.exception("prefill_failed")
                seq.ended = True
                seq.error = WorkerError(f"generation failed: {type(exc).__name__}: {exc}")
                out.append((seq, seq.error, seq.epoch))
                continue
            if not self._advance(seq, sampled, out):
                self._batch.splice(seq, cache)

    def _decode_step(self, out: Out) -> None:
        # 2. drop rows whose client went away, whose policy stopped them or that ended meanwhile.
        batch = self._batch
        batch.keep([i for i, seq in enumerate(batch.rows) if not (seq.cancelled or seq.ended)], out)
        if not batch.rows:
            return
        # 3. one forward pass for the whole batch: each row's next id in (sampled or appended),
        #    a new token out for the rows that have nothing more to feed.
        rows = [i for i, seq in enumerate(batch.rows) if not seq.feeding]
        logits = batch.decode()
        seqs = [batch.rows[i] for i in rows]
        sampled = sample(logits if len(rows) == len(batch.rows) else logits[rows], seqs, self._token_text)
        finished = {i for i, seq, s in zip(rows, seqs, sampled, strict=True) if self._advance(seq, s, out)}
        # 4. rows that hit EOS or their budget leave the batch.
        if finished:
            batch.keep([i for i in range(len(batch.rows)) if i not in finished], out)

    def _advance(self, seq: Sequence, sampled: Sampled, out: Out) -> bool:
        """Record one token for ``seq``; True when the sequence is finished."""
        self.tokens_generated += 1
        if sampled.token in self.loaded.eos_token_ids:
            seq.close("stop", out)
            return True
        if seq.record(sampled, out):
            seq.close("length", out)
            return True
        return False

    def _fail_all(self, exc: BaseException) -> None:
        out: Out = []
        for seq in [*self._batch.rows, *self._pending]:
            if not seq.ended:
                seq.ended = True
                seq.error = exc
                out.append((seq, exc, seq.epoch))
        self._batch.clear()
        self._pending.clear()
        self._flush(out)

    def _flush(self, out: Out) -> None:
        """Hand ``out`` to the streams and empty it (so a second flush sends nothing twice)."""
        if not out:
            return
        by_target: dict[Deliver, Out] = {}
        for item in out:
            by_target.setdefault(item[0].deliver, []).append(item)
        out.clear()
        for deliver, items in by_target.items():
            deliver(items)


@dataclass(frozen=True)
class AsyncioDeliver:
    """A Deliver that hands a step's events to their streams on ``loop``, one wake-up per step.

    Equal for equal loops, so ``_flush`` gathers every stream of one loop into one call."""

    loop: asyncio.AbstractEventLoop

    def __call__(self, items: Out) -> None:
        self.loop.call_soon_threadsafe(_dispatch, items)


def _dispatch(items: Out) -> None:
    for seq, item, epoch in items:
        if seq.sink is not None:
            seq.sink(item, epoch)
