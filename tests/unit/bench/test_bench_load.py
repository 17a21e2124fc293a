"""`stopgate bench load` helpers: percentiles, prompts, RSS and the loopback/bounds guards."""

from __future__ import annotations

import os
import random

import pytest

from gateway.bench import load
from gateway.cli import build_parser
from gateway.cli.common import options_from_args, settings_from_args
from gateway.errors import ConfigError
from gateway.settings import Settings


def parse(*argv: str) -> tuple[load.Options, Settings]:
    """The typed options and settings ``stopgate bench load ARGV`` hands to the benchmark."""
    args = build_parser().parse_args(["bench", "load", *argv])
    return options_from_args(load.Options, args), settings_from_args(args)


def test_percentile_is_nearest_rank() -> None:
    """p50 and p99 pick observed values; no values give None."""
    values = [float(v) for v in range(1, 101)]
    assert load.percentile(values, 50) == 50.0
    assert load.percentile(values, 99) == 99.0
    assert load.percentile([7.0], 99) == 7.0
    assert load.percentile([], 50) is None


def test_prompts_vary() -> None:
    """A client's prompts differ from one request to the next."""
    rng = random.Random(1)
    assert len({load.prompt(rng) for _ in range(50)}) > 40


def test_rss_of_a_live_and_a_missing_process() -> None:
    """RSS comes from /proc for a live process and is None for a missing one."""
    assert (load.rss_bytes(os.getpid()) or 0) > 1_000_000
    assert load.rss_bytes(None) is None
    assert load.rss_bytes(2**22 + 12345) is None


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "http://example.com", "https://0.0.0.0:8000"])
def test_only_loopback_targets(url: str) -> None:
    """A --url that is not a loopback address is refused before any request."""
    with pytest.raises(ConfigError, match="loopback"):
        load.run(*parse("--url", url, "--streams", "1", "--seconds", "1"))


@pytest.mark.parametrize(
    "argv", [("--streams", "0"), ("--streams", str(load.MAX_STREAMS + 1)), ("--seconds", "0"), ("--max-tokens", "0")]
)
def test_bounds(argv: tuple[str, str]) -> None:
    """Stream count, duration and max_tokens are bounded."""
    with pytest.raises(ConfigError):
        load.run(*parse("--url", "http://127.0.0.1:1", *argv))
