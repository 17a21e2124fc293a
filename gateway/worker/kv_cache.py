"""The batch's KV cache: preallocated per layer, written in place.

transformers' ``DynamicLayer`` appends each step's key/value column with ``torch.cat``, copying the
whole cache of every layer on every decode step: at 8 rows of ~150 tokens that was 15% of a step
(profile in the README). ``GrowingLayer`` keeps a buffer with room for ``ROOM`` more columns and
hands the model a view of the used part, so a step writes one column; the buffer is reallocated
(and compacted) only when it is full. Admission, leaving rows and trimming padding work on the
buffers too (``splice``, ``select_rows``, ``trim_front``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

ROOM = 128
"""Columns of headroom a buffer is (re)allocated with: one reallocation per 128 decode steps."""


class GrowingLayer(DynamicLayer):
    """One layer's keys/values ``[rows, heads, columns, head_dim]`` in a buffer with spare columns."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._start = 0  # first used column (``trim_front`` moves it instead of copying)
        self._end = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self._k is None or self._v is None or self._end + n > self._k.shape[-2]:
            self._reserve(key_states, value_states, n)
        assert self._k is not None and self._v is not None
        self._k[:, :, self._end : self._end + n].copy_(key_states)
        self._v[:, :, self._end : self._end + n].copy_(value_states)
        self._end += n
        self._expose()
        assert self.keys is not None and self.values is not None
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._end - self._start

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.select_rows(indices)

    def select_rows(self, indices: torch.Tensor) -> None:
        """Keep only the rows ``indices`` (rows leaving the batch)."""
        if self._k is None or self._v is None:
            return
        self._k, self._v = self._k[indices], self._v[indices]
        self._expose()

    def trim_front(self, columns: int) -> None:
        """Forget the first ``columns`` used columns (padding no row needs any more)."""
        self._start = min(self._start + columns, self._end)
        self._expose()

    def splice(self, other: GrowingLayer, total: int) -> None:
        """Append ``other``'s rows below ours, both right-aligned in ``total`` columns (left padding)."""
        assert other.keys is not None and other.values is not None
        if self.keys is None or self.values is None:
            raise ValueError("splice into an empty layer")
        mine, theirs = self.get_seq_length(), other.get_seq_length()
        rows = self.keys.shape[0] + other.keys.shape[0]
        k = self.keys.new_zeros((rows, self.keys.shape[1], total + ROOM, self.keys.shape[3]))
        v = self.values.new_zeros((rows, self.values.shape[1], total + ROOM, self.values.shape[3]))
        b = self.keys.shape[0]
        k[:b, :, total - mine : total] = self.keys
        v[:b, :, total - mine : total] = self.values
        k[b:, :, total - theirs : total] = other.keys
        v[b:, :, total - theirs : total] = other.values
        self._k, self._v, self._start, self._end = k, v, 0, total
        self._expose()

    def _reserve(self, key_states: torch.Tensor, value_states: torch.Tensor, n: int) -> None:
        used = self.get_seq_length()
        shape = list(key_states.shape)
        shape[-2] = used + n + ROOM
        k = key_states.new_empty(shape)
        vshape = list(value_states.shape)
        vshape[-2] = used + n + ROOM
        v = value_states.new_empty(vshape)
        if self.keys is not None and self.values is not None and used:
            k[:, :, :used] = self.keys
            v[:, :, :used] = self.values
        self._k, self._v, self._start, self._end = k, v, 0, used

    def _expose(self) -> None:
        """``keys`` / ``values``: the used columns, a view (what the model reads)."""
        if self._k is None or self._v is None:
            return
        self.keys = self._k[:, :, self._start : self._end]
        self.values = self._v[:, :, self._start : self._end]


def new_cache(config: Any) -> DynamicCache:
    """An empty cache of ``GrowingLayer``s for a model with ``config``."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() for _ in cache.layers]
    return cache


def layers(cache: DynamicCache) -> list[GrowingLayer]:
    found = list(cache.layers)
    if not all(isinstance(layer, GrowingLayer) for layer in found):
        raise TypeError("the batch cache must be made by new_cache")
    return found  # type: ignore[return-value]
