"""The one way Stopgate talks to Redis: how a client connects, what an outage raises, how health is asked.

Every Redis user (the policy store, the rate limiter, the audit stream, the CLI) builds its client with
``connect``: no silent client-side retries (``Retry(NoBackoff(), 0)``), so each outage is seen by the
caller, which falls back on its own schedule (spill, fail open, last-known-good). ``REDIS_ERRORS`` is
what an unreachable or failing server raises; ``ping`` turns a round trip into a health reason.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)
"""What an unreachable or failing Redis raises (connection refused, timeouts, server errors)."""

DEFAULT_TIMEOUT_S = 2.0


def connect(redis_url: str, *, timeout: float = DEFAULT_TIMEOUT_S, keepalive: bool = True) -> Redis:
    """A client that fails fast: connect and read timeouts of ``timeout`` seconds, no retries."""
    return Redis.from_url(
        redis_url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        socket_keepalive=keepalive,
    )


def redact(url: str) -> str:
    """The Redis URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def describe_error(exc: BaseException) -> str:
    """A short, single-line description of a Redis failure (class and message, capped)."""
    return f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__


async def ping(client: Redis) -> str | None:
    """``None`` when the server answers, else the reason it does not (for /readyz and logs)."""
    try:
        await client.ping()
    except REDIS_ERRORS as exc:
        return describe_error(exc)
    return None
