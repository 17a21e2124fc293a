"""Per-API-key rate limits (requests/min, tokens/min), shared by every replica through Redis.

A sliding window counter: per key and per one-minute window Redis holds a request count and a
token count; a key's usage "now" is the current window's count plus the previous window's count
weighted by how much of it still overlaps the last 60 s. That is within a few percent of an exact
sliding log, with two small counters per key and minute instead of one entry per request.

Both the check and the increment run in one Lua script on Redis's clock (``TIME``), so replicas
agree on windows and concurrent requests on different replicas cannot both take the last slot.
Tokens are only known once an answer is finished, so they are recorded afterwards and a key over
its token budget is refused from its next request on.

Limits protect the service; they never take it down: with Redis unreachable the limiter lets
everything through (fail open), logs once per outage, and asks Redis again after a short pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import redis.asyncio as aioredis
import structlog
from redis.commands.core import AsyncScript

from gateway.errors import RateLimited
from gateway.redis import REDIS_ERRORS, connect

log = structlog.get_logger(__name__)

DEFAULT_PREFIX = "stopgate:ratelimit"

# Shared by both scripts: the current window index and how far into it we are, on Redis's clock.
_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = tonumber(ARGV[1])
local idx = math.floor(now / w)
local elapsed = now - idx * w
"""

# KEYS[1], KEYS[2]: request and token counter prefixes of one API key.
# ARGV: window_ms, requests limit, tokens limit (0 = no limit).
# Returns {1, 0} (admitted and counted) or {0, wait_ms} (refused, not counted).
_CHECK = (
    _WINDOW
    + """
local function usage(base)
  local cur = tonumber(redis.call('GET', base .. ':' .. idx) or '0')
  local prev = tonumber(redis.call('GET', base .. ':' .. (idx - 1)) or '0')
  return prev, cur
end
-- ms until prev * (1 - e / w) + cur + 1 <= limit, i.e. one more unit fits; 0 if it fits now
local function wait(prev, cur, limit)
  local room = limit - 1
  if prev * (1 - elapsed / w) + cur <= room then return 0 end
  if cur <= room then
    return math.ceil(w * (1 - (room - cur) / prev) - elapsed)
  end
  -- this window alone is over the limit: in the next one its count becomes the weighted part
  return (w - elapsed) + math.ceil(w * (1 - room / cur))
end
local waited = 0
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
if rpm > 0 then
  local p, c = usage(KEYS[1])
  waited = math.max(waited, wait(p, c, rpm))
end
if tpm > 0 then
  local p, c = usage(KEYS[2])
  waited = math.max(waited, wait(p, c, tpm))
end
if waited > 0 then return {0, waited} end
if rpm > 0 then
  local k = KEYS[1] .. ':' .. idx
  redis.call('INCR', k)
  redis.call('PEXPIRE', k, 2 * w + 1000)
end
return {1, 0}
"""
)

# KEYS[1]: token counter prefix; ARGV: window_ms, tokens.
_RECORD = (
    _WINDOW
    + """
local k = KEYS[1] .. ':' .. idx
redis.call('INCRBY', k, tonumber(ARGV[2]))
redis.call('PEXPIRE', k, 2 * w + 1000)
return 1
"""
)


class RateLimiter:
    """Requests/min and tokens/min per API key id; ``0`` turns a limit off, both ``0`` turn it all off."""

    def __init__(
        self,
        redis_url: str | None,
        requests_per_min: int,
        tokens_per_min: int,
        *,
        window_s: float = 60.0,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 0.25,
        retry_down_s: float = 2.0,
    ) -> None:
        if requests_per_min < 0 or tokens_per_min < 0:
            raise ValueError("rate limits must be >= 0")
        self.redis_url = redis_url
        self.requests_per_min = requests_per_min
        self.tokens_per_min = tokens_per_min
        self.window_ms = max(1, round(window_s * 1000))
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.retry_down_s = retry_down_s
        self._client: aioredis.Redis | None = None
        self._check: AsyncScript | None = None
        self._record: AsyncScript | None = None
        self._down_until = 0.0  # monotonic; while in the future, Redis is not asked (fail open)
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.redis_url) and (self.requests_per_min > 0 or self.tokens_per_min > 0)

    async def start(self) -> None:
        """Connect lazily: no Redis round trip here, so start-up never waits on Redis."""
        if not self.enabled or self._client is not None:
            return
        assert self.redis_url
        self._client = connect(self.redis_url, timeout=self.timeout_s)
        self._check = self._client.register_script(_CHECK)
        self._record = self._client.register_script(_RECORD)

    async def close(self) -> None:
        """Let pending token records finish (bounded by the Redis timeout), then disconnect."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._client is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._client.aclose()
        self._client = self._check = self._record = None

    async def check(self, key_id: str) -> None:
        """Admit and count one request for ``key_id``, or raise ``RateLimited`` with ``retry_after``."""
        if self._check is None or self._redis_down():
            return
        try:
            admitted, wait_ms = await self._check(
                keys=self._keys(key_id),
                args=[self.window_ms, self.requests_per_min, self.tokens_per_min],
            )
        except REDIS_ERRORS as exc:
            self._went_down(exc)
            return
        self._came_back()
        if not int(admitted):
            retry_after = max(1, math.ceil(int(wait_ms) / 1000))
            raise RateLimited(
                f"Rate limit reached for this API key ({self._limits_text()}); retry in {retry_after} s.",
                retry_after=retry_after,
            )

    async def record_tokens(self, key_id: str, tokens: int) -> None:
        """Count ``tokens`` (prompt + completion) against the key's tokens/min budget."""
        if self._record is None or self.tokens_per_min <= 0 or tokens <= 0 or self._redis_down():
            return
        try:
            await self._record(keys=self._keys(key_id)[1:], args=[self.window_ms, int(tokens)])
        except REDIS_ERRORS as exc:
            self._went_down(exc)
            return
        self._came_back()

    def submit_tokens(self, key_id: str, tokens: int) -> None:
        """``record_tokens`` in the background, for synchronous callers (a stream's close)."""
        if self._record is None or self.tokens_per_min <= 0 or tokens <= 0:
            return
        task = asyncio.get_running_loop().create_task(self.record_tokens(key_id, tokens))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _keys(self, key_id: str) -> list[str]:
        # The hash tag keeps one key's counters in one slot (a Redis Cluster can run the script).
        base = f"{self.prefix}:{{{key_id}}}"
        return [base + ":req", base + ":tok"]

    def _limits_text(self) -> str:
        parts = []
        if self.requests_per_min:
            parts.append(f"{self.requests_per_min} requests")
        if self.tokens_per_min:
            parts.append(f"{self.tokens_per_min} tokens")
        per = "minute" if self.window_ms == 60_000 else f"{self.window_ms / 1000:g} s"
        return " and ".join(parts) + f" per {per}"

    def _redis_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _went_down(self, exc: BaseException) -> None:
        if not self._down_until:
            log.warning("ratelimit_redis_unreachable", error=type(exc).__name__, fail_open=True)
        self._down_until = time.monotonic() + self.retry_down_s

    def _came_back(self) -> None:
        if self._down_until:
            log.info("ratelimit_redis_back")
            self._down_until = 0.0
