"""Only the decode thread takes the cores; every other thread runs torch ops on one intra-op thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from gateway.worker import cores


@pytest.fixture
def restore_threads() -> Iterator[int]:
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def _count_in_new_thread() -> int:
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def test_reserve_cores_makes_one_thread_the_default_and_returns_the_original(restore_threads: int) -> None:
    """After reserve_cores the caller and threads started later get 1; the decode count is torch's own."""
    decode = cores.reserve_cores()
    assert decode == cores._decode_threads[0] >= 1
    assert torch.get_num_threads() == 1
    assert _count_in_new_thread() == 1


def test_reserve_cores_remembers_the_count_across_calls(restore_threads: int) -> None:
    """A second call (a second app in one process) still hands the decode thread the original count."""
    first = cores.reserve_cores()
    assert cores.reserve_cores() == first


def test_pin_threads_sets_only_what_the_caller_asks(restore_threads: int) -> None:
    """pin_threads gives the calling thread the count; current_threads reads it back."""
    cores.pin_threads(restore_threads + 1)
    assert cores.current_threads() == restore_threads + 1
