"""The in-process worker: transformers on this machine (CUDA when present), batched continuously."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.errors import ContextLengthExceeded, NotReady, RequestError, WorkerError
from gateway.worker.chat_render import ChatRenderer
from gateway.worker.cores import reserve_cores
from gateway.worker.detokenize import IncrementalDetokenizer
from gateway.worker.extras import LocalOptions, local_options
from gateway.worker.model import LoadedModel, load_model
from gateway.worker.phases import ThinkMarkers
from gateway.worker.protocol import (
    ChatMessage,
    FinishReason,
    ProbeResult,
    SamplingParams,
    ThinkingMode,
    TokenEvent,
    TokenStream,
)
from gateway.worker.scheduler import DEFAULT_PREFIX_CACHE_MB, DEFAULT_TRIM_IDLE_MS, AsyncioDeliver, BatchScheduler
from gateway.worker.sequence import Sequence as BatchSequence

if TYPE_CHECKING:
    from gateway.settings import Settings


class LocalTokenStream:
    """A ``TokenStream`` fed by the decode thread through the event loop."""

    def __init__(self, scheduler: BatchScheduler, seq: BatchSequence) -> None:
        self._scheduler = scheduler
        self._seq = seq
        self._queue: asyncio.Queue[tuple[int, TokenEvent | BaseException | None]] = asyncio.Queue()
        seq.sink = self._put
        self.prompt_tokens = len(seq.prompt_ids)
        self.finish_reason: FinishReason | None = None
        self._consumed = 0
        self._epoch = 0  # items of an older epoch were taken back by ``rewind``: dropped unread

    def _put(self, item: TokenEvent | BaseException | None, epoch: int) -> None:
        if epoch >= self._epoch:
            self._queue.put_nowait((epoch, item))

    @property
    def cached_tokens(self) -> int:
        return self._seq.cached_tokens

    @property
    def token_ids(self) -> list[int]:
        """Prompt and the ids after it up to what the caller has read (what a probe continues from).

        The decode thread may already be a token or two ahead; a probe must see exactly the answer
        the policy engine has been fed, or live and replayed decisions differ.
        """
        return self._seq.context(self._consumed)

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        while True:
            epoch, item = await self._queue.get()
            if epoch < self._epoch:
                continue
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

    def append(self, ids: list[int]) -> None:
        """Continue after what the caller has read with ``ids`` appended (see ``Sequence.rewind``)."""
        self._epoch += 1
        self._scheduler.inject(self._seq, self._consumed, ids)


class LocalWorker:
    """Implements ``gateway.worker.protocol.Worker`` with a model loaded in this process."""

    def __init__(
        self,
        model: str,
        device: str,
        data_dir: Path,
        max_batch: int = 16,
        *,
        threads: int | None = None,
        markers: ThinkMarkers | None = None,
        dtype: str = "auto",
        prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB,
        trim_idle_ms: int = DEFAULT_TRIM_IDLE_MS,
    ) -> None:
        self._spec = (model, device, data_dir, dtype)
        self._prefix_cache_mb = prefix_cache_mb
        self._trim_idle_ms = trim_idle_ms
        self._max_batch = max_batch
        self._threads = threads  # the decode thread's intra-op threads (``gateway.worker.cores``)
        self._markers = markers or ThinkMarkers()
        self._loaded: LoadedModel | None = None
        self._scheduler: BatchScheduler | None = None
        self._renderer: ChatRenderer | None = None
        self.model_id = model
        self.context_length = 2048

    @classmethod
    def for_serving(cls, settings: Settings, *, max_batch: int | None = None) -> LocalWorker:
        """The worker a serving process runs: called before the classifier or the model runs a torch
        op, it leaves the cores to the decode thread alone (``gateway.worker.cores``)."""
        threads = reserve_cores()
        markers = getattr(settings, "think_markers", None)
        return cls(
            settings.model,
            settings.device,
            settings.data_dir,
            max_batch or settings.max_batch_size,
            threads=threads,
            markers=ThinkMarkers.parse(markers) if markers else None,
            dtype=settings.dtype,
            prefix_cache_mb=settings.prefix_cache_mb,
            trim_idle_ms=settings.heap_trim_idle_ms,
        )

    async def start(self) -> None:
        """Load the model off the event loop (seconds), then start the decode thread."""
        self._loaded = await asyncio.to_thread(load_model, *self._spec)
        self.model_id = self._loaded.model_id
        self.context_length = self._loaded.context_length
        self._renderer = ChatRenderer(self._loaded.tokenizer, self._markers)
        self._scheduler = BatchScheduler(
            self._loaded,
            self._max_batch,
            self._threads,
            prefix_cache_mb=self._prefix_cache_mb,
            trim_idle_ms=self._trim_idle_ms,
        )
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

    @property
    def prompt_tokens_reused(self) -> int:
        """Prompt tokens the prefix cache saved computing (``gateway.worker.prefix_cache``)."""
        return self._scheduler.prompt_tokens_reused if self._scheduler else 0

    def _require(self) -> tuple[LoadedModel, BatchScheduler, ChatRenderer]:
        if self._loaded is None or self._scheduler is None or self._renderer is None:
            raise NotReady("the model is still loading")
        return self._loaded, self._scheduler, self._renderer

    def encode_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        continue_final: bool = False,
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
        thinking: ThinkingMode = "model",
    ) -> list[int]:
        """Token ids of the chat template applied to ``messages`` (``gateway.worker.chat_render``).

        ``continue_final`` leaves the last (assistant) message open, so generation continues it:
        that is how a probe runs on a partial answer through the worker API.
        """
        return self._render(messages, continue_final, add_generation_prompt, tools, thinking)[0]

    def _render(
        self,
        messages: Sequence[ChatMessage],
        continue_final: bool,
        add_generation_prompt: bool,
        tools: list[dict[str, Any]] | None,
        thinking: ThinkingMode,
    ) -> tuple[list[int], bool]:
        _, _, renderer = self._require()
        rendered = renderer.render(
            messages,
            tools=tools,
            thinking=thinking,
            continue_final=continue_final,
            add_generation_prompt=add_generation_prompt,
        )
        return self.encode_text(rendered.text), rendered.thinking

    def encode_text(self, text: str) -> list[int]:
        loaded, _, _ = self._require()
        return list(loaded.tokenizer.encode(text, add_special_tokens=False))

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream:
        loaded, _, renderer = self._require()
        options = local_options(
            params.extra, template_has_tools=renderer.features.tools, vocab_size=len(loaded.tokenizer)
        )
        ids, thinking = self._render(messages, False, True, options.tools, params.thinking)
        room = self.context_length - len(ids)
        if room < 1:
            raise ContextLengthExceeded(
                f"The prompt has {len(ids)} tokens; this model's context is {self.context_length}.", param="messages"
            )
        params = msgspec.structs.replace(params, max_tokens=min(params.max_tokens, room))
        return self.generate_ids(ids, params, thinking=thinking, options=options)

    def generate_ids(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        thinking: bool = False,
        options: LocalOptions | None = None,
    ) -> LocalTokenStream:
        """Generate after ``prompt_ids``; ``thinking``: the prompt ends inside a thinking block."""
        loaded, scheduler, _ = self._require()
        vocab = len(loaded.tokenizer)
        if any(not 0 <= i < vocab for i in prompt_ids):  # a client's token ids: an IndexError in the model else
            raise RequestError(f"prompt token ids must be in [0, {vocab}).", param="prompt")
        loop = asyncio.get_running_loop()
        seq = BatchSequence(
            prompt_ids,
            params,
            AsyncioDeliver(loop),
            IncrementalDetokenizer(loaded.tokenizer),
            options=options,
            markers=self._markers,
            thinking=thinking,
        )
        stream = LocalTokenStream(scheduler, seq)
        scheduler.submit(seq)
        return stream

    async def probe(self, stream: TokenStream, suffix: str, max_tokens: int) -> ProbeResult:
        if not isinstance(stream, LocalTokenStream):
            raise WorkerError("a local probe needs a local stream")
        ids = stream.token_ids + self.encode_text(suffix)
        side = self.generate_ids(ids, SamplingParams(max_tokens=max_tokens))
        events = [event async for event in side]
        return ProbeResult.from_logprobs("".join(e.text for e in events), [e.logprob for e in events])

    async def end_thinking(self, stream: TokenStream, text: str) -> int:
        """Append ``text``'s tokens to ``stream``'s row right after the events read so far (tokens
        the decode thread made beyond them are taken back); later events are answer."""
        if not isinstance(stream, LocalTokenStream):
            raise WorkerError("a local end of thinking needs a local stream")
        ids = self.encode_text(text)
        if ids:
            stream.append(ids)
        return len(ids)
