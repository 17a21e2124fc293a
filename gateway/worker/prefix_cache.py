"""Prompt KV kept after prefill, so a later prompt that starts the same way skips those tokens.

A chat prompt starts with the template's fixed head (SmolLM2's default system turn: 24 of a short
prompt's ~40 tokens), a conversation's next turn repeats the whole history, and a thinking probe
repeats the prompt and every thought before it. A key or value at position p depends only on the
tokens up to p, so the columns of an earlier prompt are exactly what this prompt would compute for
its common prefix: prefill copies them into the new cache and runs the model on the rest only.

``PrefixCache`` holds whole prompts' per-layer keys/values, least recently used first, within a
byte budget. ``longest`` finds the entry sharing the longest token prefix with a prompt (never the
whole prompt: the last token is always run, its logits are the next token's); ``add`` stores a
prefilled prompt and drops entries it extends (their columns are a prefix of its own). Touched by
the decode thread only; the counters may be read from anywhere.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

LayerKV = tuple[torch.Tensor, torch.Tensor]
"""One layer's keys and values, ``[1, heads, tokens, head_dim]``."""

MIN_REUSE = 8
"""A shorter common prefix is computed again: copying columns has a cost of its own."""


@dataclass(frozen=True, slots=True)
class PrefixHit:
    """The common prefix found: its length and the entry's columns (``tokens`` or more of them)."""

    tokens: int
    kv: list[LayerKV]


@dataclass(slots=True)
class _Entry:
    ids: npt.NDArray[np.int64]
    kv: list[LayerKV]
    nbytes: int


class PrefixCache:
    """Per-layer KV of recent prompts within ``max_bytes``; see the module docstring."""

    def __init__(self, max_bytes: int, *, min_reuse: int = MIN_REUSE) -> None:
        self.max_bytes = max_bytes
        self.min_reuse = min_reuse
        self._entries: collections.OrderedDict[int, _Entry] = collections.OrderedDict()
        self._keys = itertools.count()
        self.nbytes = 0
        self.lookups = 0
        self.hits = 0
        self.prompt_tokens = 0  # tokens of every prompt looked up
        self.reused_tokens = 0  # of those, the ones taken from an entry instead of computed

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, ids: Sequence[int]) -> PrefixHit | None:
        """The entry sharing the longest prefix with ``ids`` (at most ``len(ids) - 1`` tokens), if
        that prefix is at least ``min_reuse`` tokens long; the entry becomes the most recent."""
        self.lookups += 1
        self.prompt_tokens += len(ids)
        query = np.asarray(ids, dtype=np.int64)
        best_key, best = None, 0
        for key, entry in self._entries.items():
            n = _common_prefix(entry.ids, query, limit=len(query) - 1)
            if n > best:
                best_key, best = key, n
        if best_key is None or best < self.min_reuse:
            return None
        self._entries.move_to_end(best_key)
        self.hits += 1
        self.reused_tokens += best
        return PrefixHit(best, self._entries[best_key].kv)

    def add(self, ids: Sequence[int], kv: list[LayerKV]) -> None:
        """Keep a copy of ``kv``, the columns of all of ``ids`` (views of a live cache are fine: only
        what is kept is copied, so a prompt over the budget costs no copy)."""
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if nbytes > self.max_bytes or len(ids) < self.min_reuse:
            return
        query = np.asarray(ids, dtype=np.int64)
        for key, entry in list(self._entries.items()):
            shared = _common_prefix(entry.ids, query, limit=len(query))
            if shared == len(query):  # an entry already holds this prompt's columns
                self._entries.move_to_end(key)
                return
            if shared == len(entry.ids):  # this prompt extends that entry
                self._drop(key)
        while self._entries and self.nbytes + nbytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        kept = [
            (k.clone(memory_format=torch.contiguous_format), v.clone(memory_format=torch.contiguous_format))
            for k, v in kv
        ]
        self._entries[next(self._keys)] = _Entry(query, kept, nbytes)
        self.nbytes += nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    def _drop(self, key: int) -> None:
        self.nbytes -= self._entries.pop(key).nbytes


def _common_prefix(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], *, limit: int) -> int:
    n = min(len(a), len(b), limit)
    if n <= 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n
