"""Policy documents in Redis: the key layout, the atomic write, and reads of records and history.

Per domain: ``<prefix>:<domain>:version`` (an ``INCR`` counter, so versions only grow),
``<prefix>:<domain>:active`` (a hash: version, hash, document, ts, source) and
``<prefix>:<domain>:history`` (a list of JSON entries, newest first, capped at ``HISTORY_KEEP``).
One Lua script writes all three and publishes ``{domain, version, hash}`` on ``<prefix>:changes``,
so a write is all-or-nothing and its invalidation cannot precede it. Documents are stored as
canonical JSON without ``version`` (the counter is the version).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from gateway.errors import RequestError
from gateway.policy.schema import FIELD_NAMES, Policy, canonical_json, document_hash
from gateway.redis import connect as connect  # re-exported: the store and the CLI import them from here
from gateway.redis import redact as redact

HISTORY_KEEP = 50
DEFAULT_PREFIX = "stopgate:policy"

# KEYS: version counter, active record, history list.
# ARGV: domain, hash, document, ts, source, only_if_absent, floor version, history size, channel,
# evidence (JSON, '' for none: why an automatic change was made, kept in the history entry).
_WRITE_LUA = """
if ARGV[6] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local floor = tonumber(ARGV[7])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < floor - 1 then redis.call('SET', KEYS[1], floor - 1) end
local version = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'version', version, 'hash', ARGV[2], 'document', ARGV[3],
           'ts', ARGV[4], 'source', ARGV[5])
redis.call('LPUSH', KEYS[3], cjson.encode({version = version, hash = ARGV[2], document = ARGV[3],
                                          ts = ARGV[4], source = ARGV[5], evidence = ARGV[10]}))
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[8]) - 1)
redis.call('PUBLISH', ARGV[9], cjson.encode({domain = ARGV[1], version = version, hash = ARGV[2]}))
return version
"""


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One entry of a domain's history as Redis keeps it (``document`` without ``version``)."""

    domain: str
    version: int
    hash: str
    ts: float
    source: str
    document: Mapping[str, Any]
    evidence: Mapping[str, Any] | None = None  # autopilot's figures behind the change, if it made it

    def full_document(self) -> dict[str, Any]:
        """The document with its version, keys in schema order (Redis keeps them sorted)."""
        full = {**self.document, "version": self.version}
        return {**{k: full[k] for k in FIELD_NAMES if k in full}, **full}


def pick_version(entries: list[PolicyVersion], domain: str, version: int) -> PolicyVersion:
    """The history entry for ``version``, or a ``RequestError`` saying which versions are kept."""
    for entry in entries:
        if entry.version == version:
            return entry
    kept = ", ".join(str(e.version) for e in entries) or "none"
    raise RequestError(f"{domain!r} has no version {version} in its history (kept: {kept})", param="to_version")


class PolicyRecords:
    """The Redis side: key layout, the atomic write, reads of active records and history."""

    def __init__(self, client: Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self.channel = f"{prefix}:changes"
        self._write = client.register_script(_WRITE_LUA)

    def _keys(self, domain: str) -> list[str]:
        return [f"{self.prefix}:{domain}:{part}" for part in ("version", "active", "history")]

    async def write(
        self,
        policy: Policy,
        *,
        source: str,
        only_if_absent: bool = False,
        floor: int = 0,
        evidence: Mapping[str, Any] | None = None,
    ) -> PolicyVersion | None:
        """Store ``policy`` as its domain's next version; ``None`` if ``only_if_absent`` and one exists."""
        document = policy.to_document()
        del document["version"]
        body, digest, ts = canonical_json(document), document_hash(document), time.time()
        version = await self._write(
            keys=self._keys(policy.domain),
            args=[
                policy.domain,
                digest,
                body,
                repr(ts),
                source,
                int(only_if_absent),
                floor,
                HISTORY_KEEP,
                self.channel,
                json.dumps(evidence) if evidence else "",
            ],
        )
        if not version:
            return None
        return PolicyVersion(policy.domain, int(version), digest, ts, source, document, evidence or None)

    async def read_all(self, domains: Collection[str]) -> dict[str, PolicyVersion]:
        """Every domain's active record, read in one transaction (a consistent cut)."""
        ordered = sorted(domains)
        async with self.client.pipeline(transaction=True) as pipe:
            for domain in ordered:
                pipe.hgetall(self._keys(domain)[1])
            rows = await pipe.execute()
        return {d: _record(d, row) for d, row in zip(ordered, rows, strict=True) if row}

    async def read(self, domain: str) -> PolicyVersion | None:
        row = await self.client.hgetall(self._keys(domain)[1])
        return _record(domain, row) if row else None

    async def history(self, domain: str) -> list[PolicyVersion]:
        """Newest first, up to ``HISTORY_KEEP`` versions."""
        entries = await self.client.lrange(self._keys(domain)[2], 0, -1)
        return [_version(domain, json.loads(raw)) for raw in entries]


def _record(domain: str, row: Mapping[Any, Any]) -> PolicyVersion:
    """An ``active`` hash as Redis returns it (bytes keys and values)."""
    return _version(domain, {k.decode(): v.decode() for k, v in row.items()})


def _version(domain: str, e: Mapping[str, Any]) -> PolicyVersion:
    evidence = json.loads(e["evidence"]) if e.get("evidence") else None
    return PolicyVersion(
        domain, int(e["version"]), e["hash"], float(e["ts"]), e["source"], json.loads(e["document"]), evidence
    )


def changed_domain(data: Any) -> str | None:
    """The domain a message on the changes channel names (None for anything else)."""
    try:
        found = json.loads(data).get("domain")
    except (TypeError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None
