"""What the autopilot keeps in Redis besides the policies: one state hash per domain and the lock that
lets one replica tune at a time; and the stored policies read back as this replica validates them.

The state hash (``<prefix>:<domain>``) holds JSON fields: the sample total at the last run
(``tuned_total``), the last run and the last change (what and why), and the pending proposal.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from gateway.errors import DefinitionError
from gateway.policy.loader import parse_policy
from gateway.policy.records import PolicyVersion
from gateway.policy.schema import Policy

DEFAULT_PREFIX = "stopgate:autopilot"
LOCK_TTL_MS = 120_000
_RELEASE_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RunnerState:
    """The per-domain state hashes and the tuning lock under ``prefix``."""

    def __init__(self, client: Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self.prefix = prefix
        self._release = client.register_script(_RELEASE_LUA)

    @contextlib.asynccontextmanager
    async def lock(self) -> AsyncIterator[bool]:
        """The tuning lock: True when this replica holds it (released on exit), False when another does."""
        token = secrets.token_hex(8)
        key = f"{self.prefix}:lock"
        if not await self._client.set(key, token, nx=True, px=LOCK_TTL_MS):
            yield False
            return
        try:
            yield True
        finally:
            await self._release(keys=[key], args=[token])

    async def read(self, domain: str) -> dict[str, Any]:
        raw = await self._client.hgetall(f"{self.prefix}:{domain}")
        return {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}

    async def save(self, domain: str, fields: dict[str, Any]) -> None:
        """Set the fields given; a field given as None is removed."""
        key = f"{self.prefix}:{domain}"
        drop = [k for k, v in fields.items() if v is None]
        keep: dict[Any, Any] = {k: json.dumps(v) for k, v in fields.items() if v is not None}
        async with self._client.pipeline(transaction=True) as pipe:
            if keep:
                pipe.hset(key, mapping=keep)
            if drop:
                pipe.hdel(key, *drop)
            await pipe.execute()


def stored_policy(record: PolicyVersion | None) -> Policy | None:
    """The record's policy, or None if it does not validate here (an incompatible replica's)."""
    if record is None:
        return None
    try:
        return parse_policy(
            record.full_document(), source=f"redis {record.domain} v{record.version}", domains=[record.domain]
        )
    except DefinitionError:
        return None
