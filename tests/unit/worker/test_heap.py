"""Trimming the heap is a plain call on glibc and a no-op elsewhere."""

from __future__ import annotations

import platform

import pytest

from gateway.worker import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_calls_malloc_trim_on_glibc_and_can_repeat() -> None:
    """On glibc, trim returns True every time it is called."""
    assert heap.trim() and heap.trim()
