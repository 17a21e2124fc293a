"""Autopilot while traffic flows: after every few new samples of a domain, decide and write.

Every replica runs one ``AutopilotRunner``; a Redis lock lets one of them tune at a time. It
reads the active policies and their history through ``PolicyRecords`` and writes decisions the
same way, so every replica's policy store picks a change up through pub/sub like any other
write, and the history entry (source ``autopilot`` or ``autopilot:rollback:vN``) carries the
evidence. Per domain it keeps a small state hash in Redis (``<prefix>:<domain>``): the sample
total at the last run, the last run and the last change (what and why), and the pending
proposal (``mode: propose``). ``stopgate autopilot`` uses the same class without the loop.

The search runs in a worker thread with its own event loop: it is pure CPU and must not hold up
token streaming on the serving loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable, Collection
from typing import Any

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.autopilot.samples import SampleCounts, SampleStore
from gateway.autopilot.tuner import Context, Decision, Version, decide, live_evidence, replay_score, usable
from gateway.errors import DefinitionError, RequestError
from gateway.policy.loader import parse_policy
from gateway.policy.quality import Embed
from gateway.policy.records import PolicyRecords, PolicyVersion
from gateway.policy.schema import Policy

log = structlog.get_logger(__name__)

DEFAULT_PREFIX = "stopgate:autopilot"
LOCK_TTL_MS = 120_000
_REDIS_DOWN = (RedisError, OSError, asyncio.TimeoutError)
_RELEASE_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class AutopilotRunner:
    """Decides and writes autopilot changes for ``domains``; ``start`` runs it in the background."""

    def __init__(
        self,
        records: PolicyRecords,
        samples: SampleStore,
        domains: Collection[str],
        *,
        interval_s: float,
        tune_every: int,
        embed: Embed | None = None,
        prefix: str = DEFAULT_PREFIX,
        poll_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self.samples = samples
        self.domains = sorted(domains)
        self.interval_s = interval_s
        self.tune_every = tune_every
        self.embed = embed
        self.prefix = prefix
        self.poll_s = poll_s
        self.clock = clock
        self._client: Redis = records.client
        self._release = self._client.register_script(_RELEASE_LUA)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- background loop ----------------------------------------------------------------------

    def notify(self, domain: str) -> None:
        """A sample of ``domain`` was stored (the sample store's ``on_written``)."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="autopilot-runner")

    async def close(self) -> None:
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()
            try:
                await self.tick()
            except _REDIS_DOWN as exc:
                log.warning("autopilot.redis_unavailable", error=type(exc).__name__)
            except Exception:  # a bug must not end the loop
                log.exception("autopilot.tick_failed")

    async def tick(self) -> list[dict[str, Any]]:
        """Run every domain that is due: autopilot on, enough samples, ``tune_every`` new ones."""
        active = await self.records.read_all(self.domains)
        specs = {d: p.autopilot for d, r in active.items() if (p := _policy(r)) is not None and p.autopilot}
        if not specs:
            return []
        counts = await self.samples.counts(specs)
        reports = []
        for domain, spec in specs.items():
            every = spec.tune_every or self.tune_every
            c = counts[domain]
            if c.held < spec.decision_samples():
                continue
            last = (await self._state(domain)).get("tuned_total")
            if last is not None and c.total - int(last) < every:
                continue
            report = await self.run_domain(domain)
            if report is not None:
                reports.append(report)
        return reports

    # -- one domain ---------------------------------------------------------------------------

    async def run_domain(self, domain: str, *, mode: str | None = None, force: bool = False) -> dict[str, Any] | None:
        """Decide for ``domain`` under the lock and carry the decision out; None if another replica tunes.

        ``mode`` overrides the policy's (``propose`` from the CLI); ``force`` skips the rate
        limit and the hold after a person's edit (an operator asking now).
        """
        token = secrets.token_hex(8)
        lock = f"{self.prefix}:lock"
        if not await self._client.set(lock, token, nx=True, px=LOCK_TTL_MS):
            return None
        try:
            return await self._run_locked(domain, mode, force)
        finally:
            await self._release(keys=[lock], args=[token])

    async def _run_locked(self, domain: str, mode: str | None, force: bool) -> dict[str, Any]:
        record = await self.records.read(domain)
        policy = _policy(record)
        if record is None or policy is None or policy.autopilot is None:
            return {"domain": domain, "action": "keep", "reason": "autopilot is off for this policy"}
        if mode is not None:
            policy = msgspec.structs.replace(policy, autopilot=msgspec.structs.replace(policy.autopilot, mode=mode))
        state = await self._state(domain)
        counts = (await self.samples.counts([domain]))[domain]
        samples = await self.samples.read(domain)
        history = [v for v in await self._history(domain) if v.version != record.version]
        last_change = state.get("last_change")
        ctx = Context(
            active=Version(record.version, record.source, record.ts, policy),
            history=history,
            now=self.clock(),
            interval_s=0.0 if force else self.interval_s,
            last_change_ts=None if force or not last_change else float(last_change["ts"]),
            embed=self.embed,
        )
        decision = await asyncio.to_thread(asyncio.run, decide(ctx, samples))  # pure CPU, off the serving loop
        report = _report(domain, record.version, decision, self.clock())
        fields: dict[str, Any] = {"last_run": report}
        if decision.evaluated:
            fields["tuned_total"] = counts.total
        if decision.action in ("apply", "rollback"):
            written = await self._write(domain, record.version, decision)
            if written is not None:
                report["version"] = written.version
                fields["last_change"] = report
                fields["proposal"] = None
        elif decision.action == "propose":
            assert decision.policy is not None
            fields["proposal"] = {**report, "document": decision.policy.to_document()}
        await self._save_state(domain, fields)
        log.info(
            "autopilot.run",
            domain=domain,
            action=report["action"],
            version=report.get("version"),
            from_version=record.version,
            reason=decision.reason,
            samples=report["evidence"].get("samples"),
            agreement=report["evidence"].get("agreement"),
            bound=report["evidence"].get("agreement_lower_bound"),
        )
        return report

    async def _write(self, domain: str, from_version: int, decision: Decision) -> PolicyVersion | None:
        """Write the decided version unless a person changed the policy meanwhile."""
        assert decision.policy is not None
        current = await self.records.read(domain)
        if current is None or current.version != from_version:
            log.info("autopilot.skipped_changed_meanwhile", domain=domain, expected=from_version)
            return None
        document = decision.policy.to_document()
        checked = parse_policy(document, source="autopilot", domains=[*self.domains, domain], expect_domain=domain)
        written = await self.records.write(checked, source=decision.source, evidence=decision.evidence_dict())
        log.info(
            "autopilot.change",
            domain=domain,
            action=decision.action,
            from_version=from_version,
            version=written.version if written else None,
            source=decision.source,
        )
        return written

    async def apply_proposal(self, domain: str) -> dict[str, Any]:
        """Write the pending proposal (``stopgate autopilot apply``), if its base is still active."""
        state = await self._state(domain)
        proposal = state.get("proposal")
        if not proposal:
            raise RequestError(f"no autopilot proposal for {domain!r}; run 'stopgate autopilot propose' first")
        current = await self.records.read(domain)
        if current is None or current.version != proposal["from_version"]:
            raise RequestError(
                f"the proposal was made for v{proposal['from_version']}, but v{current.version if current else '?'} "
                "is active now; propose again"
            )
        policy = parse_policy(proposal["document"], source="proposal", domains=self.domains, expect_domain=domain)
        evidence = {**proposal["evidence"], "approved": True}
        written = await self.records.write(policy, source="autopilot:approved", evidence=evidence)
        assert written is not None
        report = {**{k: v for k, v in proposal.items() if k != "document"}, "version": written.version}
        report["ts"] = self.clock()
        await self._save_state(domain, {"last_change": report, "proposal": None})
        log.info("autopilot.change", domain=domain, action="approved", version=written.version)
        return report

    # -- status -------------------------------------------------------------------------------

    async def status(self) -> list[dict[str, Any]]:
        """Per domain: autopilot settings, samples held, current agreement and bound, last change and why."""
        active = await self.records.read_all(self.domains)
        counts = await self.samples.counts(self.domains)
        return [await self._domain_status(d, active.get(d), counts[d]) for d in self.domains]

    async def _domain_status(self, domain: str, record: PolicyVersion | None, counts: SampleCounts) -> dict[str, Any]:
        policy = _policy(record)
        state = await self._state(domain)
        out: dict[str, Any] = {
            "domain": domain,
            "version": record.version if record else None,
            "autopilot": msgspec.to_builtins(policy.autopilot) if policy and policy.autopilot else None,
            "metric": (policy.quality.metric if policy and policy.quality else "prefix") if policy else None,
            "samples_held": counts.held,
            "samples_total": counts.total,
        }
        if policy is not None and policy.autopilot is not None and record is not None and counts.held:
            target = policy.autopilot.target_agreement
            out["samples_needed"] = policy.autopilot.decision_samples()
            if policy.quality is None or policy.quality.metric != "semantic" or self.embed is not None:
                samples = await self.samples.read(domain)
                pool = usable(samples, policy.max_tokens)
                fresh = [s for s in pool if s.policy_version == record.version]
                if pool:
                    score = await asyncio.to_thread(
                        asyncio.run, replay_score(policy, pool, policy.max_tokens, target, self.embed)
                    )
                    f = score.figures
                    out["current"] = {
                        "basis": "replay of the active version over the samples held",
                        "samples": f["items"],
                        "agreement": round(f["agreement"], 4),
                        "agreement_lower_bound": round(f["lower_bound"], 4),
                        "meets_target": score.feasible,
                    }
                if fresh:
                    out["fresh"] = live_evidence(fresh, policy.quality, target, self.embed).as_dict()
        out["last_run"] = state.get("last_run")
        out["last_change"] = state.get("last_change")
        proposal = state.get("proposal")
        out["proposal"] = {k: v for k, v in proposal.items() if k != "document"} if proposal else None
        if proposal:
            out["proposal"]["policy"] = proposal["document"]
        return out

    # -- state in Redis -----------------------------------------------------------------------

    async def _state(self, domain: str) -> dict[str, Any]:
        raw = await self._client.hgetall(f"{self.prefix}:{domain}")
        return {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}

    async def _save_state(self, domain: str, fields: dict[str, Any]) -> None:
        key = f"{self.prefix}:{domain}"
        drop = [k for k, v in fields.items() if v is None]
        keep: dict[Any, Any] = {k: json.dumps(v) for k, v in fields.items() if v is not None}
        async with self._client.pipeline(transaction=True) as pipe:
            if keep:
                pipe.hset(key, mapping=keep)
            if drop:
                pipe.hdel(key, *drop)
            await pipe.execute()

    async def _history(self, domain: str) -> list[Version]:
        out = []
        for entry in await self.records.history(domain):
            policy = _policy(entry)
            if policy is not None:
                out.append(Version(entry.version, entry.source, entry.ts, policy))
        return out


def _policy(record: PolicyVersion | None) -> Policy | None:
    """The record's policy, or None if it does not validate here (an incompatible replica's)."""
    if record is None:
        return None
    try:
        return parse_policy(
            record.full_document(), source=f"redis {record.domain} v{record.version}", domains=[record.domain]
        )
    except DefinitionError:
        return None


def _report(domain: str, from_version: int, decision: Decision, now: float) -> dict[str, Any]:
    return {
        "domain": domain,
        "ts": now,
        "action": decision.action,
        "from_version": from_version,
        "reason": decision.reason,
        "evidence": decision.evidence_dict(),
        **({"rollback_to": decision.rollback_to} if decision.rollback_to is not None else {}),
    }
