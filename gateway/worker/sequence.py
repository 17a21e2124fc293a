"""One request inside the batch scheduler: its tokens, their phases, and where its events go.

The ids after the prompt are one list, ``tail``: the sampled tokens (one event each) and the
tokens a forced end of thinking appended (no events), in order. ``in_kv`` says how many of them
the row's KV cache holds; the rest are fed one per decode step before the row samples again, so
appending tokens runs the same single-token steps as decoding (greedy output stays the same
alone and batched). ``rewind`` takes back the tokens the caller has not read yet before
appending: the model then continues from exactly what the caller saw.

Events are stamped with ``epoch``; a rewind starts a new one, so events of the taken-back tokens
that are still on their way to the stream are dropped there (``LocalTokenStream``).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gateway.worker.detokenize import IncrementalDetokenizer
from gateway.worker.extras import LocalOptions
from gateway.worker.phases import PhaseSplitter, Piece, ThinkMarkers
from gateway.worker.protocol import SamplingParams, TokenEvent, TopLogprob

Item = TokenEvent | BaseException | None  # a token, the error that ended the stream, or its end
Out = list[tuple["Sequence", Item, int]]  # one step's items with their sequence's epoch, for ``_flush``
Deliver = Callable[[Out], None]


@dataclass(frozen=True, slots=True)
class Sampled:
    """One sampled token and its statistics, before its phase is known."""

    token: int
    logprob: float
    entropy: float
    top: tuple[TopLogprob, ...] = ()


class Sequence:
    """One request inside the scheduler: its prompt, sampling state and where its events go."""

    def __init__(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        deliver: Deliver,
        detokenizer: IncrementalDetokenizer,
        *,
        options: LocalOptions | None = None,
        markers: ThinkMarkers | None = None,
        thinking: bool = False,
    ) -> None:
        self.prompt_ids = prompt_ids
        self.cached_tokens = 0  # of the prompt, from the prefix cache at its first prefill
        self.params = params
        self.deliver = deliver
        self.detokenizer = detokenizer
        self.options = options or LocalOptions()
        self.markers = markers
        self.splitter = PhaseSplitter(markers, thinking=thinking)
        self.generated: list[int] = []  # the tokens of this request's events, in order
        self.tail: list[int] = []  # every id after the prompt: generated and appended
        self.marks: list[int] = []  # len(tail) right after each event's token
        self.in_kv = 0  # ids of ``tail`` in the row's KV cache
        self.epoch = 0
        self.counts: collections.Counter[int] = collections.Counter()  # generated ids, for penalties
        self.bias: tuple[torch.Tensor, torch.Tensor] | None = None  # logit_bias as tensors, made once
        self._held: collections.deque[Sampled] = collections.deque()  # fed to the splitter, no event yet
        self.cancelled = False
        self.ended = False
        self.finish_reason: str | None = None
        self.error: BaseException | None = None  # what failed the stream, if something did
        self.sink: Callable[[Item, int], None] | None = None  # where ``AsyncioDeliver`` puts the items
        self.generator: torch.Generator | None = None
        if not params.greedy and params.seed is not None:
            self.generator = torch.Generator().manual_seed(params.seed)

    @property
    def top_logprobs(self) -> int:
        return self.params.top_logprobs

    @property
    def feeding(self) -> bool:
        """Appended ids are still to go into the KV cache: this step's logits are not sampled."""
        return self.in_kv < len(self.tail) - 1

    def context(self, events: int) -> list[int]:
        """Prompt and tail up to the ``events``-th event (appended ids before it included)."""
        tail, marks = self.tail, self.marks
        return [*self.prompt_ids, *(tail[: marks[events] - 1] if len(marks) > events else tail)]

    def record(self, sampled: Sampled, out: Out) -> bool:
        """Add one sampled token and emit the events the phase splitter resolves; True when the
        budget is spent (the caller closes the sequence)."""
        token = sampled.token
        self.generated.append(token)
        self.tail.append(token)
        self.marks.append(len(self.tail))
        if self.options.frequency_penalty or self.options.presence_penalty:
            self.counts[token] += 1
        self._held.append(sampled)
        self._emit(self.splitter.feed(self.detokenizer.push(token)), out)
        return len(self.tail) >= self.params.max_tokens

    def close(self, reason: str, out: Out) -> None:
        """End of generation: the splitter's held tokens go out, then the end of the stream."""
        if not self.ended:
            self._emit(self.splitter.finish(), out)
        self.finish(reason, out)

    def finish(self, reason: str, out: Out) -> None:
        """Close the stream once; the first reason given wins."""
        if self.ended:
            return
        self.ended = True
        self.finish_reason = reason
        out.append((self, None, self.epoch))

    def rewind(self, events: int, ids: list[int]) -> int:
        """Keep the first ``events`` events, then append ``ids``; returns how many ids the KV cache
        must drop (its newest), already taken off ``in_kv``. The phase is the answer from here."""
        events = min(events, len(self.generated))
        keep = self.marks[events - 1] if events else 0
        drop = max(0, self.in_kv - keep)
        self.in_kv -= drop
        self.epoch += 1
        self.generated = self.generated[:events]
        self.marks = self.marks[:events]
        self.tail = [*self.tail[:keep], *ids]
        if self.options.frequency_penalty or self.options.presence_penalty:
            self.counts = collections.Counter(self.generated)
        self._held.clear()
        self.splitter = PhaseSplitter(self.markers, thinking=False)
        self.detokenizer.restart([*self.prompt_ids, *self.tail])
        return drop

    def reopen(self) -> None:
        """A sequence that had ended (end of sequence, budget) continues after a rewind."""
        self.ended = False
        self.finish_reason = None

    def _emit(self, pieces: list[Piece], out: Out) -> None:
        for piece in pieces:
            s = self._held.popleft()
            event = TokenEvent(
                len(self.generated) - 1 - len(self._held),
                s.token,
                piece.text,
                s.logprob,
                s.entropy,
                phase=piece.phase,
                top_logprobs=s.top,
            )
            out.append((self, event, self.epoch))
