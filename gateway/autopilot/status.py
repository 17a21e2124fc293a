"""``stopgate autopilot status`` and ``GET /admin/autopilot``: one domain's autopilot as it stands.

Its settings, the samples held and needed, the active version's agreement over them (a replay,
off the serving loop) and on the samples it produced itself, the last run and change, and the
pending proposal with its policy.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from gateway.autopilot.samples import SampleCounts, SampleStore
from gateway.autopilot.state import RunnerState, stored_policy
from gateway.autopilot.tuner import live_evidence, replay_score, usable
from gateway.policy.quality import Embed
from gateway.policy.records import PolicyVersion


async def domain_status(
    domain: str,
    record: PolicyVersion | None,
    counts: SampleCounts,
    *,
    samples: SampleStore,
    state: RunnerState,
    embed: Embed | None,
) -> dict[str, Any]:
    """Per domain: autopilot settings, samples held, current agreement and bound, last change and why."""
    policy = stored_policy(record)
    kept = await state.read(domain)
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
        if policy.quality is None or policy.quality.metric != "semantic" or embed is not None:
            held = await samples.read(domain)
            pool = usable(held, policy.max_tokens)
            fresh = [s for s in pool if s.policy_version == record.version]
            if pool:
                score = await asyncio.to_thread(
                    asyncio.run, replay_score(policy, pool, policy.max_tokens, target, embed)
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
                out["fresh"] = live_evidence(fresh, policy.quality, target, embed).as_dict()
    out["last_run"] = kept.get("last_run")
    out["last_change"] = kept.get("last_change")
    proposal = kept.get("proposal")
    out["proposal"] = {k: v for k, v in proposal.items() if k != "document"} if proposal else None
    if proposal:
        out["proposal"]["policy"] = proposal["document"]
    return out
