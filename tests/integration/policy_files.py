"""Shared by the policy store, admin API and CLI tests: a policies directory and a polling wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

DOMAINS = ("factual", "math", "code")
FILES = {
    "default.yaml": "domain: default\nmax_tokens: 512\n",
    "factual.yaml": "domain: factual\nmax_tokens: 256\nmin_tokens: 4\nrules:\n  - repetition: {ngram: 6}\n",
}


def write_policies(tmp_path: Path) -> Path:
    """``tmp_path/policies`` holding ``FILES`` (a default and a factual policy)."""
    directory = tmp_path / "policies"
    directory.mkdir()
    for name, text in FILES.items():
        (directory / name).write_text(text)
    return directory


async def eventually(check: Callable[[], bool], within: float = 5.0) -> float:
    """Seconds until ``check()`` holds; fails the test after ``within`` seconds."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start
