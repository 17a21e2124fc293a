"""The in-process worker: transformers on this machine (CUDA when present), batched continuously."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from gateway.errors import ContextLengthExceeded, NotReady, WorkerError
from gateway.worker.cores import reserve_cores
from gateway.worker.detokenize import IncrementalDetokenizer
from gateway.worker.model import LoadedModel, load_model
from gateway.worker.protocol import (
    ChatMessage,
    FinishReason,
    ProbeResult,
    SamplingParams,
    TokenEvent,
    TokenStream,
    message_dicts,
)
from gateway.worker.scheduler import AsyncioDeliver, BatchScheduler
from gateway.worker.scheduler import Sequence as BatchSequence

if TYPE_CHECKING:
    from gateway.settings import Settings


class LocalTokenStream:
    """A ``TokenStream`` fed by the decode thread through the event loop."""

    def __init__(self, scheduler: BatchScheduler, seq: BatchSequence) -> None:
        self._scheduler = scheduler
        self._seq = seq
        self._queue: asyncio.Queue[TokenEvent | BaseException | None] = asyncio.Queue()
        seq.sink = self._queue.put_nowait
        self.prompt_tokens = len(seq.prompt_ids)
        self.finish_reason: FinishReason | None = None
        self._consumed = 0

    @property
    def token_ids(self) -> list[int]:
        """Prompt and the generated ids the caller has read (what a probe continues from).

        The decode thread may already be a token or two ahead; a probe must see exactly the answer
        the policy engine has been fed, or live and replayed decisions differ.
        """
        return [*self._seq.prompt_ids, *self._seq.generated[: self._consumed]]

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        while True:
            item = await self._queue.get()
            if item is None:
                self.finish_reason = self._seq.finish_reason  # type: ignore[assignment]
                return
            if isinstance(item, BaseException):
                self.finish_reason = "cancelled"
                raise item
            self._consumed += 1
            yield item

    def cancel(self) -> None:
        if not self._seq.cancelled:
            self._seq.cancelled = True
            self._scheduler.wake()


class LocalWorker:
    """Implements ``gateway.worker.protocol.Worker`` with a model loaded in this process."""

    def __init__(
        self, model: str, device: str, data_dir: Path, max_batch: int = 16, *, threads: int | None = None
    ) -> None:
        self._spec = (model, device, data_dir)
        self._max_batch = max_batch
        self._threads = threads  # the decode thread's intra-op threads (``gateway.worker.cores``)
        self._loaded: LoadedModel | None = None
        self._scheduler: BatchScheduler | None = None
        self.model_id = model
        self.context_length = 2048

    @classmethod
    def for_serving(cls, settings: Settings, *, max_batch: int | None = None) -> LocalWorker:
        """The worker a serving process runs: called before the classifier or the model runs a torch
        op, it leaves the cores to the decode thread alone (``gateway.worker.cores``)."""
        threads = reserve_cores()
        return cls(
            settings.model, settings.device, settings.data_dir, max_batch or settings.max_batch_size, threads=threads
        )

    async def start(self) -> None:
        """Load the model off the event loop (seconds), then start the decode thread."""
        self._loaded = await asyncio.to_thread(load_model, *self._spec)
        self.model_id = self._loaded.model_id
        self.context_length = self._loaded.context_length
        self._scheduler = BatchScheduler(self._loaded, self._max_batch, self._threads)
        self._scheduler.start()

    async def close(self) -> None:
        if self._scheduler is not None:
            await asyncio.to_thread(self._scheduler.stop)

    @property
    def ready(self) -> bool:
        return self._scheduler is not None

    @property
    def queue_depth(self) -> int:
        return self._scheduler.queue_depth if self._scheduler else 0

    @property
    def active(self) -> int:
        return self._scheduler.active if self._scheduler else 0

    @property
    def tokens_generated(self) -> int:
        return self._scheduler.tokens_generated if self._scheduler else 0

    def _require(self) -> tuple[LoadedModel, BatchScheduler]:
        if self._loaded is None or self._scheduler is None:
            raise NotReady("the model is still loading")
        return self._loaded, self._scheduler

    def encode_chat(
        self, messages: Sequence[ChatMessage], *, continue_final: bool = False, add_generation_prompt: bool = True
    ) -> list[int]:
        """Token ids of the chat template applied to ``messages``.

        ``continue_final`` leaves the last (assistant) message open, so generation continues it:
        that is how a probe runs on a partial answer through the worker API.
        """
        loaded, _ = self._require()
        rendered = loaded.tokenizer.apply_chat_template(
            message_dicts(messages),
            add_generation_prompt=add_generation_prompt and not continue_final,
            continue_final_message=continue_final,
            tokenize=False,
        )
        return self.encode_text(str(rendered))

    def encode_text(self, text: str) -> list[int]:
        loaded, _ = self._require()
        return list(loaded.tokenizer.encode(text, add_special_tokens=False))

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream:
        ids = self.encode_chat(messages)
        room = self.context_length - len(ids)
        if room < 1:
            raise ContextLengthExceeded(
                f"The prompt has {len(ids)} tokens; this model's context is {self.context_length}.", param="messages"
            )
        return self.generate_ids(ids, msgspec.structs.replace(params, max_tokens=min(params.max_tokens, room)))

    def generate_ids(self, prompt_ids: list[int], params: SamplingParams) -> LocalTokenStream:
        loaded, scheduler = self._require()
        loop = asyncio.get_running_loop()
        seq = BatchSequence(prompt_ids, params, AsyncioDeliver(loop), IncrementalDetokenizer(loaded.tokenizer))
        stream = LocalTokenStream(scheduler, seq)
        scheduler.submit(seq)
        return stream

    async def probe(self, stream: TokenStream, suffix: str, max_tokens: int) -> ProbeResult:
        loaded, _ = self._require()
        if not isinstance(stream, LocalTokenStream):
            raise WorkerError("a local probe needs a local stream")
        ids = stream.token_ids + list(loaded.tokenizer.encode(suffix, add_special_tokens=False))
        side = self.generate_ids(ids, SamplingParams(max_tokens=max_tokens))
        events = [event async for event in side]
        return ProbeResult.from_logprobs("".join(e.text for e in events), [e.logprob for e in events])
