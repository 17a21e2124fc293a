"""Autopilot while traffic flows: after every few new samples of a domain, decide and write.

Every replica runs one ``AutopilotRunner``; a Redis lock lets one of them tune at a time. It
reads the active policies and their history through ``PolicyRecords`` and writes decisions the
same way, so every replica's policy store picks a change up through pub/sub like any other
write, and the history entry (source ``autopilot`` or ``autopilot:rollback:vN``) carries the
evidence. Per domain it keeps a small state hash in Redis (``<prefix>:<domain>``): the sample
total at the last run, the last run and the last change (what and why), and the pending
proposal (``mode: propose``), kept by ``gateway.autopilot.state``. ``stopgate autopilot`` uses the
same class without the loop.

The search runs in a worker thread with its own event loop: it is pure CPU and must not hold up
token streaming on the serving loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection
from typing import Any

import msgspec
import structlog
from redis.exceptions import RedisError

from gateway.autopilot.samples import SampleStore
from gateway.autopilot.state import DEFAULT_PREFIX, RunnerState, stored_policy
from gateway.autopilot.status import domain_status
from gateway.autopilot.tuner import Context, Decision, Version, decide
from gateway.errors import RequestError
from gateway.policy.loader import parse_policy
from gateway.policy.quality import Embed
from gateway.policy.records import PolicyRecords, PolicyVersion

log = structlog.get_logger(__name__)

_REDIS_DOWN = (RedisError, OSError, asyncio.TimeoutError)


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
        self.state = RunnerState(records.client, prefix)
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
        specs = {d: p.autopilot for d, r in active.items() if (p := stored_policy(r)) is not None and p.autopilot}
        if not specs:
            return []
        counts = await self.samples.counts(specs)
        reports = []
        for domain, spec in specs.items():
            every = spec.tune_every or self.tune_every
            c = counts[domain]
            if c.held < spec.decision_samples():
                continue
            last = (await self.state.read(domain)).get("tuned_total")
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
        async with self.state.lock() as held:
            return await self._run_locked(domain, mode, force) if held else None

    async def _run_locked(self, domain: str, mode: str | None, force: bool) -> dict[str, Any]:
        record = await self.records.read(domain)
        policy = stored_policy(record)
        if record is None or policy is None or policy.autopilot is None:
            return {"domain": domain, "action": "keep", "reason": "autopilot is off for this policy"}
        if mode is not None:
            policy = msgspec.structs.replace(policy, autopilot=msgspec.structs.replace(policy.autopilot, mode=mode))
        state = await self.state.read(domain)
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
        await self.state.save(domain, fields)
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
        state = await self.state.read(domain)
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
        await self.state.save(domain, {"last_change": report, "proposal": None})
        log.info("autopilot.change", domain=domain, action="approved", version=written.version)
        return report

    # -- status -------------------------------------------------------------------------------

    async def status(self) -> list[dict[str, Any]]:
        """Per domain: autopilot settings, samples held, current agreement and bound, last change and why."""
        active = await self.records.read_all(self.domains)
        counts = await self.samples.counts(self.domains)
        return [
            await domain_status(d, active.get(d), counts[d], samples=self.samples, state=self.state, embed=self.embed)
            for d in self.domains
        ]

    # -- history --------------------------------------------------------------------------------

    async def _history(self, domain: str) -> list[Version]:
        out = []
        for entry in await self.records.history(domain):
            policy = stored_policy(entry)
            if policy is not None:
                out.append(Version(entry.version, entry.source, entry.ts, policy))
        return out


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
