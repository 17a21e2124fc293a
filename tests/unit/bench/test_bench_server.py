"""What benchmarks start for themselves: a gateway that fails to start is reported, Redis is stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.bench.server import local_redis, serve
from gateway.errors import ConfigError
from gateway.settings import Settings


def test_a_gateway_that_exits_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    """serve() raises ConfigError carrying the server's own error instead of waiting for /readyz."""
    env = {"STOPGATE_MAX_CONCURRENT_STREAMS": "not-a-number"}
    with (
        pytest.raises(ConfigError, match=r"exited at start(?s:.*)STOPGATE_MAX_CONCURRENT_STREAMS"),
        serve(Settings(data_dir=tmp_path), tmp_path / "gateway.log", env, timeout=60),
    ):
        pass


def test_local_redis_runs_inside_the_block_only(tmp_path: Path) -> None:
    """The server answers inside the with block and is stopped after it."""
    with local_redis(tmp_path / "redis") as server:
        assert server.running
    assert not server.running
