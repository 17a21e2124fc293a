"""Per-key rate limits against a real Redis: two limiters (two replicas) share one budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis

from gateway.errors import RateLimited
from gateway.ratelimit import RateLimiter
from gateway.redis_server import LocalRedis, free_port

KEY = "key-0123456789ab"


@asynccontextmanager
async def limiters(n: int, make: Callable[[], RateLimiter]) -> AsyncIterator[list[RateLimiter]]:
    started = [make() for _ in range(n)]
    for limiter in started:
        await limiter.start()
    try:
        yield started
    finally:
        for limiter in started:
            await limiter.close()


async def test_two_replicas_share_the_requests_budget(redis_url: str) -> None:
    """Requests counted on either replica come out of one budget; the next one is refused on both."""
    async with limiters(2, lambda: RateLimiter(redis_url, requests_per_min=5, tokens_per_min=0)) as (a, b):
        for limiter in (a, b, a, b, a):
            await limiter.check(KEY)
        for limiter in (a, b):
            with pytest.raises(RateLimited) as info:
                await limiter.check(KEY)
            assert 1 <= info.value.retry_after <= 72  # the rest of this window + 1/5 of the next
            assert "5 requests per minute" in info.value.message


async def test_keys_have_separate_budgets(redis_url: str) -> None:
    """One key over its budget does not limit another key."""
    async with limiters(1, lambda: RateLimiter(redis_url, requests_per_min=1, tokens_per_min=0)) as (a,):
        await a.check(KEY)
        with pytest.raises(RateLimited):
            await a.check(KEY)
        await a.check("key-other")


async def test_tokens_recorded_on_both_replicas_exhaust_the_token_budget(redis_url: str) -> None:
    """Tokens recorded on two replicas add up; over tokens/min the key is refused, requests alone are not."""
    async with limiters(2, lambda: RateLimiter(redis_url, requests_per_min=0, tokens_per_min=100)) as (a, b):
        await a.record_tokens(KEY, 60)
        await b.check(KEY)
        await b.record_tokens(KEY, 50)
        for limiter in (a, b):
            with pytest.raises(RateLimited) as info:
                await limiter.check(KEY)
            assert "100 tokens per minute" in info.value.message


async def test_refused_requests_are_not_counted(redis_url: str) -> None:
    """A refused request takes nothing from the budget: the counter stays at the limit."""
    async with limiters(1, lambda: RateLimiter(redis_url, requests_per_min=2, tokens_per_min=0)) as (a,):
        await a.check(KEY)
        await a.check(KEY)
        for _ in range(5):
            with pytest.raises(RateLimited):
                await a.check(KEY)
    client = redis.Redis.from_url(redis_url)
    counts = [int(client.get(k) or 0) for k in client.keys("stopgate:ratelimit:*:req:*")]
    client.close()
    assert counts == [2]


async def test_retry_after_is_enough_to_get_back_in(redis_url: str) -> None:
    """Waiting the advertised Retry-After admits the next request (1 s windows to keep it short)."""
    async with limiters(1, lambda: RateLimiter(redis_url, requests_per_min=2, tokens_per_min=0, window_s=1)) as (a,):
        await a.check(KEY)
        await a.check(KEY)
        with pytest.raises(RateLimited) as info:
            await a.check(KEY)
        assert info.value.retry_after <= 2
        await asyncio.sleep(info.value.retry_after)
        await a.check(KEY)


async def test_submit_tokens_is_recorded_by_close(redis_url: str) -> None:
    """Tokens submitted from synchronous code are written before close() returns."""
    async with limiters(1, lambda: RateLimiter(redis_url, requests_per_min=0, tokens_per_min=10)) as (a,):
        a.submit_tokens(KEY, 25)
    async with limiters(1, lambda: RateLimiter(redis_url, requests_per_min=0, tokens_per_min=10)) as (b,):
        with pytest.raises(RateLimited):
            await b.check(KEY)


async def test_zero_limits_disable_the_limiter(redis_url: str) -> None:
    """With both limits 0 nothing is refused and Redis is never written."""
    async with limiters(1, lambda: RateLimiter(redis_url, requests_per_min=0, tokens_per_min=0)) as (a,):
        assert not a.enabled
        for _ in range(50):
            await a.check(KEY)
        await a.record_tokens(KEY, 10_000)
    client = redis.Redis.from_url(redis_url)
    assert client.keys("stopgate:ratelimit:*") == []
    client.close()


async def test_unreachable_redis_fails_open_quickly() -> None:
    """No Redis: every request is admitted, without raising and without waiting on timeouts."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with limiters(1, lambda: RateLimiter(url, requests_per_min=1, tokens_per_min=1)) as (a,):
        t = time.monotonic()
        for _ in range(20):
            await a.check(KEY)
            await a.record_tokens(KEY, 100)
        assert time.monotonic() - t < 2.0


async def test_limits_come_back_after_a_redis_outage(tmp_path: Path) -> None:
    """During an outage requests pass (fail open); once Redis is back, the limit is enforced again."""
    server = LocalRedis(tmp_path / "redis")

    def make() -> RateLimiter:
        return RateLimiter(server.url, requests_per_min=1, tokens_per_min=0, retry_down_s=0.1)

    server.start()
    try:
        async with limiters(1, make) as (a,):
            await a.check(KEY)
            with pytest.raises(RateLimited):
                await a.check(KEY)
            server.stop()
            for _ in range(3):
                await a.check(KEY)
            server.start()
            with redis.Redis.from_url(server.url) as client:
                client.flushdb()  # the server may have saved the old counts
            await asyncio.sleep(0.2)
            await a.check(KEY)
            with pytest.raises(RateLimited):
                await a.check(KEY)
    finally:
        server.stop()
