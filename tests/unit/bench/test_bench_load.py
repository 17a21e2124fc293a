"""`stopgate bench load`: the loopback and bounds guards before any request."""

from __future__ import annotations

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
