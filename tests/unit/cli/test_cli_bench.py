"""``stopgate bench``: a benchmark stopped by SIGTERM unwinds, so what it started is stopped."""

from __future__ import annotations

import argparse
import os
import signal
import types
from dataclasses import dataclass

import pytest

from gateway.cli.bench import _typed_handler


@dataclass(frozen=True)
class Options:
    pass


def test_sigterm_unwinds_the_benchmark_and_restores_the_handler() -> None:
    """SIGTERM during run() raises SystemExit(143) through its finally blocks; the old handler is back after."""
    cleaned: list[str] = []

    def run(options: Options, settings: object) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            return 0
        finally:
            cleaned.append("gateway stopped")

    module = types.SimpleNamespace(Options=Options, run=run)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info:
        _typed_handler(module)(argparse.Namespace())  # type: ignore[arg-type]
    assert exit_info.value.code == 143 and cleaned == ["gateway stopped"]
    assert signal.getsignal(signal.SIGTERM) is before
