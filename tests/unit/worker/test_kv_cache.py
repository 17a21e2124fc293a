"""The preallocated KV cache layer holds exactly what concatenation would, through growth, splicing and trimming."""

from __future__ import annotations

import torch

from gateway.worker.kv_cache import ROOM, GrowingLayer


def cols(rows: int, n: int, start: float) -> torch.Tensor:
    """``n`` distinct columns ``[rows, 2 heads, n, 4]``."""
    return torch.arange(rows * 2 * n * 4, dtype=torch.float32).reshape(rows, 2, n, 4) + start


def test_updates_equal_concatenation_across_a_reallocation() -> None:
    """Prefill then more single-column steps than the headroom: keys/values equal torch.cat of the inputs."""
    layer, parts = GrowingLayer(), [cols(2, 5, 0)]
    layer.update(parts[0], -parts[0])
    for step in range(ROOM + 3):
        parts.append(cols(2, 1, 1000 + step))
        keys, values = layer.update(parts[-1], -parts[-1])
    want = torch.cat(parts, dim=-2)
    assert torch.equal(keys, want) and torch.equal(values, -want)
    assert layer.get_seq_length() == 5 + ROOM + 3


def test_splice_left_pads_the_shorter_side_and_trim_drops_leading_columns() -> None:
    """Rows of 3 and 5 columns spliced into 5: the short one gets 2 zero columns in front; trim_front(1) drops one."""
    a, b = GrowingLayer(), GrowingLayer()
    a.update(cols(1, 3, 0), cols(1, 3, 0))
    b.update(cols(1, 5, 500), cols(1, 5, 500))
    a.splice(b, 5)
    assert a.keys is not None and a.keys.shape == (2, 2, 5, 4)
    assert torch.equal(a.keys[0, :, :2], torch.zeros(2, 2, 4)) and torch.equal(a.keys[0, :, 2:], cols(1, 3, 0)[0])
    assert torch.equal(a.keys[1], cols(1, 5, 500)[0])
    a.update(cols(2, 1, 900), cols(2, 1, 900))  # the next step writes in place after the splice
    a.trim_front(1)
    assert a.get_seq_length() == 5 and torch.equal(a.keys[:, :, -1:], cols(2, 1, 900))


def test_select_rows_keeps_the_chosen_rows() -> None:
    """Rows leaving the batch: select_rows keeps the others' columns unchanged."""
    layer = GrowingLayer()
    data = cols(3, 4, 0)
    layer.update(data, data)
    layer.select_rows(torch.tensor([0, 2]))
    assert layer.keys is not None and torch.equal(layer.keys, data[[0, 2]])
