"""The policy store: versioned documents in Redis, an immutable in-process snapshot on every replica.

Redis is the source of truth (``gateway.policy.records``: versioned documents, history and a pub/sub
channel, written atomically). ``PolicyStore`` keeps a snapshot ``{domain: ActivePolicy}``
(``gateway.policy.snapshot``) that is replaced, never mutated, so ``get`` is a dict lookup and a
request keeps the object it started with. A background task listens for invalidations and resyncs
in full on every (re)connect and every few seconds, because pub/sub messages can be missed. With
Redis down the snapshot stays (last-known-good, or the files if Redis was never reached), the store
reports ``degraded`` and writes raise ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import structlog
from redis.asyncio import Redis

from gateway.errors import DefinitionError, StoreUnavailable, UnknownDomain
from gateway.policy.drift import Drift, find_drift
from gateway.policy.loader import load_policies_dir, parse_policy
from gateway.policy.records import (
    DEFAULT_PREFIX,
    PolicyRecords,
    PolicyVersion,
    changed_domain,
    connect,
    pick_version,
    redact,
)
from gateway.policy.schema import DEFAULT_DOMAIN, Policy
from gateway.policy.snapshot import ActivePolicy as ActivePolicy  # re-exported: serving.ports imports it here
from gateway.policy.snapshot import PolicySnapshot
from gateway.redis import REDIS_ERRORS

log = structlog.get_logger(__name__)

_REDIS_DOWN = REDIS_ERRORS


class PolicyStore:
    """Every replica's view of the policies; see the module docstring for the protocol."""

    def __init__(
        self,
        redis_url: str,
        policies_dir: Path,
        domains: Collection[str],
        *,
        prefix: str = DEFAULT_PREFIX,
        resync_interval: float = 5.0,
        start_timeout: float = 3.0,
        source: str = "store",
    ) -> None:
        self.redis_url = redis_url
        self.policies_source = source  # which wins on start when a file and the active version differ
        self._file_hashes: dict[str, str] = {}
        self.policies_dir = Path(policies_dir)
        self.known_domains = frozenset(domains) | {DEFAULT_DOMAIN}
        self._prefix = prefix
        self._resync_interval = resync_interval
        self._start_timeout = start_timeout
        self._snapshot = PolicySnapshot({})
        self._healthy = False
        self._reason: str | None = "not started"
        self._client: Redis | None = None
        self._records: PolicyRecords | None = None
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._retry_now = asyncio.Event()
        self._lock = asyncio.Lock()  # orders every read-then-apply of the snapshot
        self._closing = False

    # --- the request path -------------------------------------------------------------------

    @property
    def snapshot(self) -> PolicySnapshot:
        """The current immutable snapshot; hold on to it to pin a request's policies."""
        return self._snapshot

    def get(self, domain: str) -> ActivePolicy:
        """The active policy for ``domain`` (or the default): a dict lookup, no I/O."""
        return self._snapshot.get(domain)

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def degraded_reason(self) -> str | None:
        return None if self._healthy else self._reason

    def status(self) -> dict[str, Any]:
        return {
            "state": "ok" if self._healthy else "degraded",
            "reason": self.degraded_reason,
            "redis": redact(self.redis_url),
            "versions": {d: a.version for d, a in self._snapshot.items()},
            "source": sorted({a.source for _, a in self._snapshot.items()}),
        }

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the files (invalid files: ``DefinitionError``), then connect, seed and sync."""
        files = load_policies_dir(self.policies_dir, self.known_domains - {DEFAULT_DOMAIN})
        self._file_hashes = {d: p.content_hash() for d, p in files.items()}
        self._snapshot = PolicySnapshot(
            {d: ActivePolicy(p, p.version, p.content_hash(), "files") for d, p in files.items()}
        )
        self._client = connect(self.redis_url)
        self._records = PolicyRecords(self._client, self._prefix)
        self._task = asyncio.create_task(self._run(), name="policy-store-sync")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._synced.wait(), self._start_timeout)
        if self._healthy and self.policies_source == "files":
            with contextlib.suppress(StoreUnavailable):
                await self.reload_from_files()  # files win on start: each changed file becomes a new version
        for drift in self.drift():  # an edited file that is not live must not go unnoticed
            log.warning(
                "policy.file_differs",
                domain=drift.domain,
                file_hash=drift.file_hash,
                active_hash=drift.active_hash,
                active_version=drift.active_version,
                detail=drift.describe(self.policies_source),
            )

    def file_hash(self, domain: str) -> str | None:
        """The hash of the domain's policy file as last read (start or reload); None without a file."""
        return self._file_hashes.get(domain)

    def drift(self) -> list[Drift]:
        """Domains whose file differs from the active version (empty while only the files are known)."""
        active = {d: (a.version, a.hash, a.source) for d, a in self._snapshot.items() if a.source != "files"}
        return [d for d in find_drift(self._file_hashes, active) if d.active_version is not None]

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        # Cancel until it is done: a timeout inside redis-py can swallow one cancellation (py3.11).
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._healthy, self._reason = False, "closed"

    # --- writes ------------------------------------------------------------------------------

    def check_domain(self, domain: str) -> None:
        if domain not in self.known_domains:
            raise UnknownDomain(
                f"unknown domain {domain!r}; known: {', '.join(sorted(self.known_domains))}", param="domain"
            )

    def validate(self, domain: str, document: str | bytes | Mapping[str, Any], *, source: str) -> Policy:
        self.check_domain(domain)
        return parse_policy(document, source=source, domains=self.known_domains, expect_domain=domain)

    async def put(self, domain: str, document: str | bytes | Mapping[str, Any], *, source: str = "api") -> ActivePolicy:
        """Validate (``DefinitionError``: nothing changes), then write a new version and publish it."""
        policy = self.validate(domain, document, source="request body")
        return await self._write(policy, source)

    async def history(self, domain: str) -> list[PolicyVersion]:
        self.check_domain(domain)
        records = self._require_redis()
        try:
            return await records.history(domain)
        except _REDIS_DOWN as exc:
            raise self._unavailable(exc) from exc

    async def rollback(self, domain: str, to_version: int) -> ActivePolicy:
        """A new version whose document equals version ``to_version``'s."""
        old = pick_version(await self.history(domain), domain, to_version)
        policy = self.validate(domain, old.full_document(), source=f"history v{to_version}")
        return await self._write(policy, f"rollback:v{to_version}")

    async def reload_from_files(self) -> dict[str, ActivePolicy]:
        """Re-read the policies directory and write the documents that changed; returns those."""
        files = load_policies_dir(self.policies_dir, self.known_domains - {DEFAULT_DOMAIN})
        self._file_hashes = {d: p.content_hash() for d, p in files.items()}
        changed: dict[str, ActivePolicy] = {}
        for domain, policy in sorted(files.items()):
            current = self._snapshot.own(domain)
            if current is None or current.source != "redis" or current.hash != policy.content_hash():
                changed[domain] = await self._write(policy, "files")
        return changed

    async def _write(self, policy: Policy, source: str) -> ActivePolicy:
        records = self._require_redis()
        async with self._lock:
            try:
                written = await records.write(policy, source=source)
            except _REDIS_DOWN as exc:
                raise self._unavailable(exc, maybe_written=True) from exc
            assert written is not None
            active = ActivePolicy(policy.with_version(written.version), written.version, written.hash, "redis")
            self._snapshot = self._snapshot.replaced({policy.domain: active})
        log.info("policy.written", domain=policy.domain, version=written.version, hash=written.hash, source=source)
        return active

    def _require_redis(self) -> PolicyRecords:
        if self._records is None:
            raise StoreUnavailable("the policy store is not started")
        if not self._healthy:
            self._retry_now.set()
            raise StoreUnavailable(
                f"policy store is read-only: {(self._reason or 'Redis unreachable').rstrip('.')}. Policies "
                "are served from the last-known-good snapshot; retry the change when Redis is reachable."
            )
        return self._records

    def _unavailable(self, exc: BaseException, *, maybe_written: bool = False) -> StoreUnavailable:
        self._retry_now.set()
        advice = (
            "the change could not be confirmed: check the active version before retrying"
            if maybe_written
            else "retry when Redis is reachable"
        )
        return StoreUnavailable(
            f"Redis at {redact(self.redis_url)} is unreachable ({exc or type(exc).__name__}); {advice}"
        )

    # --- sync --------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.05
        while not self._closing:
            assert self._client is not None
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._records_or_fail().channel)  # before the resync: nothing slips by
                await self._seed()
                await self._resync()
                if not self._healthy:
                    log.info("policy.store.connected", redis=redact(self.redis_url))
                self._healthy, self._reason, backoff = True, None, 0.05
                self._synced.set()
                await self._listen(pubsub)
            except _REDIS_DOWN as exc:
                if self._closing:
                    return
                self._degrade(f"Redis at {redact(self.redis_url)} is unreachable: {exc or type(exc).__name__}")
            except Exception as exc:  # a bug must not end the sync loop: report it and go round again
                log.exception("policy.store.sync_failed")
                self._degrade(f"policy sync failed: {type(exc).__name__}: {exc}")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            self._retry_now.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), backoff)
            backoff = min(backoff * 2, 2.0)

    def _degrade(self, reason: str) -> None:
        if self._healthy or self._reason != reason:
            log.warning("policy.store.degraded", reason=reason)
        self._healthy, self._reason = False, reason
        self._synced.set()

    def _records_or_fail(self) -> PolicyRecords:
        assert self._records is not None
        return self._records

    async def _listen(self, pubsub: Any) -> None:
        due = time.monotonic() + self._resync_interval
        while not self._closing:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                domain = changed_domain(message.get("data"))
                if domain in self.known_domains:
                    async with self._lock:
                        found = await self._records_or_fail().read(domain)
                        self._apply({domain: found} if found else {})
                else:  # not ours to interpret: be safe and read everything
                    due = 0.0
            if time.monotonic() >= due:  # doubles as the heartbeat that notices a hung server
                await self._resync()
                due = time.monotonic() + self._resync_interval

    async def _seed(self) -> None:
        """Write what Redis lacks from what this replica knows (the files, or last-known-good)."""
        for domain, active in self._snapshot.items():
            seeded = await self._records_or_fail().write(
                active.policy, source=f"seed:{active.source}", only_if_absent=True, floor=active.version
            )
            if seeded is not None:
                log.info("policy.seeded", domain=domain, version=seeded.version, hash=seeded.hash)

    async def _resync(self) -> None:
        async with self._lock:
            self._apply(await self._records_or_fail().read_all(self.known_domains))

    def _apply(self, records: Mapping[str, PolicyVersion]) -> None:
        updates: dict[str, ActivePolicy] = {}
        for domain, record in records.items():
            current = self._snapshot.own(domain)
            if (
                current is not None
                and current.source == "redis"
                and (current.version, current.hash) == (record.version, record.hash)
            ):
                continue
            try:
                policy = self.validate(domain, record.full_document(), source=f"redis {domain} v{record.version}")
            except DefinitionError as exc:  # written by an incompatible replica: keep what we have
                log.error(
                    "policy.stored_document_invalid",
                    domain=domain,
                    version=record.version,
                    problems=[str(p) for p in exc.problems],
                )
                continue
            updates[domain] = ActivePolicy(policy, record.version, record.hash, "redis")
        if updates:
            self._snapshot = self._snapshot.replaced(updates)
            log.info("policy.snapshot", versions={d: a.version for d, a in updates.items()})
