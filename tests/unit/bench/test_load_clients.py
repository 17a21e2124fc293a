"""`stopgate bench load`'s clients: varied prompts and the server's RSS."""

from __future__ import annotations

import os
import random

from gateway.bench import load_clients


def test_prompts_vary() -> None:
    """A client's prompts differ from one request to the next."""
    rng = random.Random(1)
    assert len({load_clients.prompt(rng) for _ in range(50)}) > 40


def test_rss_of_a_live_and_a_missing_process() -> None:
    """RSS comes from /proc for a live process and is None for a missing one."""
    assert (load_clients.rss_bytes(os.getpid()) or 0) > 1_000_000
    assert load_clients.rss_bytes(None) is None
    assert load_clients.rss_bytes(2**22 + 12345) is None
