"""The rows that decode together: one batched KV cache, left-padded, and its 2-D attention mask.

Row i attends where ``mask[i]`` is 1 (the padding and the tokens a rewind took back are 0); its next
position is the number of 1s (its length), given as explicit ``position_ids``, so every row runs
as if it ran alone. Touched only by the decode thread (``gateway.worker.scheduler``).

Prefill starts from the longest prompt prefix the ``PrefixCache`` holds (``gateway.worker.prefix_cache``)
and stores the prompt it computed, so the template's head, a conversation's history and a probe's
thinking are computed once.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from gateway.worker.kv_cache import layers, new_cache
from gateway.worker.model import LoadedModel
from gateway.worker.prefix_cache import PrefixCache
from gateway.worker.sequence import Out, Sequence


class Batch:
    """The batch's rows (sequences), their KV cache and mask; prefill, one decode step, splice, keep."""

    def __init__(self, loaded: LoadedModel, prefixes: PrefixCache | None = None) -> None:
        self.loaded = loaded
        self.prefixes = prefixes
        self.rows: list[Sequence] = []
        self._cache: DynamicCache | None = None
        self._mask = torch.zeros((0, 0), dtype=torch.long, device=loaded.device)

    def row_of(self, seq: Sequence) -> int | None:
        return next((i for i, r in enumerate(self.rows) if r is seq), None)

    def hide_newest(self, row: int, drop: int) -> None:
        """Hide the row's newest ``drop`` attended columns (tokens a rewind took back)."""
        cols = self._mask[row].nonzero()[:, 0]
        self._mask[row, cols[-drop:]] = 0

    def clear(self) -> None:
        self.rows, self._cache = [], None

    def prefill(self, ids: list[int]) -> tuple[DynamicCache, torch.Tensor, int]:
        """One sequence alone: its own cache, the logits of its next token, and how many of ``ids``
        came from the prefix cache."""
        cache = new_cache(self.loaded.model.config)
        hit = self.prefixes.longest(ids) if self.prefixes is not None else None
        start = 0
        if hit is not None:
            start = hit.tokens
            for layer, (k, v) in zip(layers(cache), hit.kv, strict=True):
                layer.update(k[:, :, :start], v[:, :, :start])
        # No position_ids: a single row's positions follow the cache's length.
        tensor = torch.tensor([ids[start:]], dtype=torch.long, device=self.loaded.device)
        result = self.loaded.model(input_ids=tensor, cache=cache, use_cache=True, logits_to_keep=1)
        if self.prefixes is not None:
            self.prefixes.add(ids, _filled(cache))
        return cache, result.logits[:, -1, :], start

    def decode(self) -> torch.Tensor:
        """One forward pass for every row (each feeds its next id); the logits of each row's next token."""
        ids = [seq.tail[seq.in_kv] for seq in self.rows]
        for seq in self.rows:
            seq.in_kv += 1
        positions = self._mask.sum(dim=1, keepdim=True)  # before this step's column: each row's length
        self._mask = torch.nn.functional.pad(self._mask, (0, 1), value=1)
        result = self.loaded.model(
            input_ids=torch.tensor(ids, dtype=torch.long, device=self.loaded.device)[:, None],
            attention_mask=self._mask,
            position_ids=positions,
            cache=self._cache,
            use_cache=True,
        )
        return result.logits[:, -1, :]

    def splice(self, seq: Sequence, cache: DynamicCache) -> None:
        """Append a prefilled sequence as a new row, left-padding whichever side is shorter."""
        length = len(seq.prompt_ids) + seq.in_kv
        if self._cache is None or not self.rows:
            self._cache = cache
            self.rows = [seq]
            self._mask = torch.ones((1, length), dtype=torch.long, device=self.loaded.device)
            return
        width = self._mask.shape[1]
        total = max(width, length)
        for mine, theirs in zip(layers(self._cache), layers(cache), strict=True):
            mine.splice(theirs, total)
        new_mask = torch.zeros((1, total), dtype=torch.long, device=self.loaded.device)
        new_mask[:, total - length :] = 1
        old_mask = torch.nn.functional.pad(self._mask, (total - width, 0))
        self._mask = torch.cat([old_mask, new_mask], dim=0)
        self.rows.append(seq)

    def keep(self, keep: list[int], out: Out) -> None:
        """Shrink the batch to the rows in ``keep``; trim padding columns no row needs any more."""
        if len(keep) == len(self.rows):
            return
        for i, seq in enumerate(self.rows):
            if i not in keep:
                seq.finish("cancelled", out)
        if not keep:
            self.clear()
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.loaded.device)
        assert self._cache is not None
        self._cache.batch_select_indices(index)
        self.rows = [self.rows[i] for i in keep]
        self._mask = self._mask[index]
        used = self._mask.any(dim=0).nonzero()
        first = int(used[0]) if used.numel() else 0
        if first > 0:
            self._mask = self._mask[:, first:]
            for layer in layers(self._cache):
                layer.trim_front(first)


def _filled(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for layer in layers(cache):
        assert layer.keys is not None and layer.values is not None
        out.append((layer.keys, layer.values))
    return out
