"""Continuous batching over one batched KV cache, on a dedicated decode thread.

Every step of the loop: admit waiting requests (prefill each, then splice its KV cache into the
batch, left-padded), drop cancelled rows, run ONE forward pass for all rows, sample one token per
row, hand the tokens to their streams. Requests join and leave between steps, so a cancelled
request stops using compute within one decode step and a new one waits at most one step.

Rows are left-padded to a common length; the 2-D attention mask hides the padding and explicit
``position_ids`` keep every row's positions as if it ran alone, so greedy output matches a
request decoded on its own.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import torch
from transformers import DynamicCache

from gateway.errors import WorkerError
from gateway.worker.cores import current_threads, pin_threads
from gateway.worker.detokenize import IncrementalDetokenizer
from gateway.worker.model import LoadedModel
from gateway.worker.protocol import SamplingParams, TokenEvent

log = structlog.get_logger(__name__)

Item = TokenEvent | BaseException | None  # a token, the error that ended the stream, or its end
Out = list[tuple["Sequence", Item]]  # one step's items, in order, for ``_flush``
Deliver = Callable[[Out], None]


class Sequence:
    """One request inside the scheduler: its prompt, sampling state and where its tokens go."""

    def __init__(
        self, prompt_ids: list[int], params: SamplingParams, deliver: Deliver, detokenizer: IncrementalDetokenizer
    ) -> None:
        self.prompt_ids = prompt_ids
        self.params = params
        self.deliver = deliver
        self.detokenizer = detokenizer
        self.generated: list[int] = []
        self.cancelled = False
        self.ended = False
        self.finish_reason: str | None = None
        self.sink: Callable[[Item], None] | None = None  # where ``AsyncioDeliver`` puts this stream's items
        self.generator: torch.Generator | None = None
        if not params.greedy and params.seed is not None:
            self.generator = torch.Generator().manual_seed(params.seed)


class BatchScheduler:
    def __init__(self, loaded: LoadedModel, max_batch: int = 16, threads: int | None = None) -> None:
        self.loaded = loaded
        self.max_batch = max_batch
        self.threads = threads  # intra-op threads of the decode thread; None: the process default
        self._pinned = threading.Event()
        self.decode_threads: int | None = None  # what the decode thread runs with, once started
        self.tokens_generated = 0
        self._pending: collections.deque[Sequence] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Batch state, touched only by the decode thread.
        self._rows: list[Sequence] = []
        self._cache: DynamicCache | None = None
        # Row i attends where _mask[i] is 1; its next position is the number of 1s (its length).
        self._mask = torch.zeros((0, 0), dtype=torch.long, device=loaded.device)
        self._last = torch.zeros((0,), dtype=torch.long, device=loaded.device)

    # -- called from any thread -------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def active(self) -> int:
        return len(self._rows)

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
            while True:
                with self._wake:
                    while not self._stopping and not self._pending and not self._rows:
                        self._wake.wait()
                    if self._stopping:
                        break
                try:
                    self._step()
                except Exception as exc:  # a broken step fails its requests, not the worker
                    log.exception("decode_step_failed")
                    self._fail_all(WorkerError(f"generation failed: {type(exc).__name__}: {exc}"))
        self._fail_all(WorkerError("worker is shutting down"))

    def _step(self) -> None:
        admitted: Out = []
        decoded: Out = []
        try:
            self._admit(admitted)
            # New requests' first tokens go out now, not after the batch's next forward pass (TTFT).
            self._flush(admitted)
            self._decode_step(decoded)
        finally:
            self._flush(admitted)  # no-op unless admission itself failed part-way
            self._flush(decoded)

    def _admit(self, out: Out) -> None:
        # 1. admit waiting requests while there is room: prefill alone, sample the first token, splice in.
        while self._pending and len(self._rows) < self.max_batch:
            seq = self._pending.popleft()
            if seq.cancelled:
                self._finish(seq, "cancelled", out)
                continue
            try:
                cache, logits = self._prefill(seq.prompt_ids)
                chosen, stats = self._sample(logits, [seq])
            except Exception as exc:  # this request alone fails; it is in neither queue nor batch now
                log.exception("prefill_failed")
                seq.ended = True
                out.append((seq, WorkerError(f"generation failed: {type(exc).__name__}: {exc}")))
                continue
            if not self._advance(seq, int(chosen[0]), stats[0], out):
                self._splice(seq, cache, chosen)

    def _decode_step(self, out: Out) -> None:
        # 2. drop rows whose client went away or whose policy stopped them.
        self._keep([i for i, seq in enumerate(self._rows) if not seq.cancelled], out)
        # 3. one forward pass for the whole batch, one new token per row (fed back as the next input).
        if self._rows:
            self._last, stats = self._sample(self._decode(), self._rows)
            rows = zip(self._rows, self._last.tolist(), stats, strict=True)
            done = [self._advance(seq, token, st, out) for seq, token, st in rows]
            # 4. rows that hit EOS or their budget leave the batch.
            self._keep([i for i, d in enumerate(done) if not d], out)

    def _prefill(self, prompt_ids: list[int]) -> tuple[DynamicCache, torch.Tensor]:
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.loaded.device)
        cache = DynamicCache(config=self.loaded.model.config)
        result = self.loaded.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        return cache, result.logits[:, -1, :]

    def _decode(self) -> torch.Tensor:
        positions = self._mask.sum(dim=1, keepdim=True)  # before this step's column: each row's length
        self._mask = torch.nn.functional.pad(self._mask, (0, 1), value=1)
        result = self.loaded.model(
            input_ids=self._last[:, None],
            attention_mask=self._mask,
            position_ids=positions,
            cache=self._cache,
            use_cache=True,
        )
        return result.logits[:, -1, :]

    def _splice(self, seq: Sequence, cache: DynamicCache, token: torch.Tensor) -> None:
        """Append a prefilled sequence (``token``: its first, shape ``[1]``) as a new row, left-padding
        whichever side is shorter."""
        length = len(seq.prompt_ids)
        if self._cache is None or not self._rows:
            self._cache = cache
            self._rows = [seq]
            self._mask = torch.ones((1, length), dtype=torch.long, device=self.loaded.device)
            self._last = token
            return
        width = self._mask.shape[1]
        total = max(width, length)
        for mine, theirs in zip(_layers(self._cache), _layers(cache), strict=True):
            mine.keys = torch.cat([_pad_left(mine.keys, total), _pad_left(theirs.keys, total)], dim=0)
            mine.values = torch.cat([_pad_left(mine.values, total), _pad_left(theirs.values, total)], dim=0)
        new_mask = torch.zeros((1, total), dtype=torch.long, device=self.loaded.device)
        new_mask[:, total - length :] = 1
        old_mask = torch.nn.functional.pad(self._mask, (total - width, 0))
        self._mask = torch.cat([old_mask, new_mask], dim=0)
        self._last = torch.cat([self._last, token])
        self._rows.append(seq)

    def _keep(self, keep: list[int], out: Out) -> None:
        """Shrink the batch to the rows in ``keep``; trim padding columns no row needs any more."""
        if len(keep) == len(self._rows):
            return
        for i, seq in enumerate(self._rows):
            if i not in keep:
                self._finish(seq, "cancelled", out)
        if not keep:
            self._rows, self._cache = [], None
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.loaded.device)
        assert self._cache is not None
        self._cache.batch_select_indices(index)
        self._rows = [self._rows[i] for i in keep]
        self._mask = self._mask[index]
        self._last = self._last[index]
        used = self._mask.any(dim=0).nonzero()
        first = int(used[0]) if used.numel() else 0
        if first > 0:
            self._mask = self._mask[:, first:]
            for layer in _layers(self._cache):
                layer.keys = layer.keys[:, :, first:, :]
                layer.values = layer.values[:, :, first:, :]

    # -- sampling ---------------------------------------------------------------------------------

    def _sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> tuple[torch.Tensor, list[list[float]]]:
        """Greedy or temperature/top-p sampling per row: the tokens (a tensor on the model's device,
        ready to feed back) and each row's [logprob, entropy]."""
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        chosen = torch.argmax(logprobs, dim=-1)
        for i, seq in enumerate(seqs):
            if not seq.params.greedy:
                chosen[i] = _sample_row(logits[i].float(), seq.params, seq.generator)
        picked = logprobs.gather(1, chosen[:, None])[:, 0]
        # -sum(p * log p); 0 * -inf (a token with no mass) counts as 0. In place: one vocab-wide buffer.
        entropy = -logprobs.exp().mul_(logprobs).nan_to_num_().sum(dim=-1)
        return chosen, torch.stack([picked, entropy], dim=1).tolist()

    def _advance(
        self,
        seq: Sequence,
        token: int,
        stats: list[float],
        out: Out,
    ) -> bool:
        """Record one token for ``seq``; True when the sequence is finished."""
        self.tokens_generated += 1
        if token in self.loaded.eos_token_ids:
            self._finish(seq, "stop", out)
            return True
        seq.generated.append(token)
        text = seq.detokenizer.push(token)
        out.append((seq, TokenEvent(len(seq.generated) - 1, token, text, stats[0], stats[1])))
        if len(seq.generated) >= seq.params.max_tokens:
            self._finish(seq, "length", out)
            return True
        return False

    def _finish(self, seq: Sequence, reason: str, out: Out) -> None:
        """Close ``seq``'s stream once; the first reason given wins."""
        if seq.ended:
            return
        seq.ended = True
        seq.finish_reason = reason
        out.append((seq, None))

    def _fail_all(self, exc: BaseException) -> None:
        out: Out = []
        for seq in [*self._rows, *self._pending]:
            if not seq.ended:
                seq.ended = True
                out.append((seq, exc))
        self._rows, self._cache = [], None
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


def _layers(cache: DynamicCache) -> list[Any]:
    """The per-layer key/value holders (``DynamicLayer``: plain ``keys`` / ``values`` tensors)."""
    return list(cache.layers)


def _pad_left(t: torch.Tensor, total: int) -> torch.Tensor:
    missing = total - t.shape[-2]
    return torch.nn.functional.pad(t, (0, 0, missing, 0)) if missing > 0 else t


def _sample_row(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    probs = torch.softmax(logits / max(params.temperature, 1e-5), dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
        keep[0] = True  # a top_p that rounds to 0 still leaves the most likely token
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    probs = probs / probs.sum()
    if generator is not None and probs.device.type != "cpu":
        return torch.multinomial(probs.cpu(), 1, generator=generator)[0].to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)[0]


@dataclass(frozen=True)
class AsyncioDeliver:
    """A Deliver that hands a step's events to their streams on ``loop``, one wake-up per step.

    Equal for equal loops, so ``_flush`` gathers every stream of one loop into one call."""

    loop: asyncio.AbstractEventLoop

    def __call__(self, items: Out) -> None:
        self.loop.call_soon_threadsafe(_dispatch, items)


def _dispatch(items: Out) -> None:
    for seq, item in items:
        if seq.sink is not None:
            seq.sink(item)
