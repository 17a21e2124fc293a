"""``stopgate bench tradeoff``: completion tokens saved vs answer quality, per domain.

1. Full inference: every query greedy, no stopping rules, cap 512 tokens, every token event
   recorded (cached under ``<data_dir>/bench-cache/``, so a rerun only replays).
2. Policy run: each query is routed as the gateway routes it (the classifier picks the domain,
   that domain's policy applies, else ``default``) and the policy is replayed over the recorded
   generation, exactly as the live pipeline feeds it (``gateway.offline.replay``); probe rules get
   real side generations from the model.
3. Baselines: one global static budget with the same total tokens, and a Dynasor-style
   probe-only policy applied to every domain. Probes are side generations on the whole prefix
   (seconds each on a CPU), so the probe-only baseline runs on a sample: the first
   ``--probe-baseline-rows`` rows of each domain (0: skip, -1: every row), reported side by side
   with the per-domain policies on the same sample.
Metrics are reported per TRUE domain (the data's ``domain``); see ``gateway.offline.metrics``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.errors import RequestError
from gateway.offline.dataset import Row, load_rows
from gateway.offline.generations import FULL_CAP, Generation
from gateway.offline.metrics import Item
from gateway.offline.replay import PolicyOutput
from gateway.offline.report import build_report, markdown, overall, plot
from gateway.offline.report import per_domain as per_domain_figures
from gateway.offline.session import ReplaySession, policy_for, route_rows, routing_accuracy
from gateway.policy.loader import load_policies_dir
from gateway.policy.rules import Probe
from gateway.policy.schema import DEFAULT_DOMAIN, Policy

if TYPE_CHECKING:
    from gateway.settings import Settings

PROBE_ONLY = Probe(every=32, suffix="\nFinal answer:", max_tokens=12, agree=2, min_confidence=0.5, answer="text")
"""The single global setting of the probe-only baseline (Dynasor-CoT style: probe every 32 tokens, stop
on two equal answers). The embedded model's probe answers have a median confidence (mean token
probability) near 0.55, so 0.8 would almost never let it stop; 0.5 keeps the confident half."""


def probe_only_policy(domain: str, probe: Probe = PROBE_ONLY, cap: int = FULL_CAP) -> Policy:
    return Policy(domain=domain, max_tokens=cap, min_tokens=16, rules=(probe,))


SETTINGS = ("model", "device", "domains_dir", "policies_dir", "data_dir")


@dataclass(frozen=True)
class Options:
    data: Path = field(metadata={"help": "JSON lines: id, domain, query, gold"})
    json: Path = field(metadata={"help": "write the report here"})
    items_out: Path = field(metadata={"help": "write one JSON line per query here"})
    markdown: Path | None = field(default=None, metadata={"help": "write a Markdown table here"})
    plot: Path | None = field(default=None, metadata={"help": "write a PNG plot (tokens saved vs EM) here"})
    limit_per_domain: int | None = field(default=None, metadata={"help": "only the first N rows of each domain"})
    concurrency: int = field(default=32, metadata={"help": "requests decoded together (batch rows)"})
    probe_baseline_rows: int = field(
        default=10, metadata={"help": "rows per domain for the probe-only baseline (0: skip it, -1: all rows)"}
    )
    quiet: bool = field(default=False, metadata={"help": "no progress bars"})


def run(options: Options, settings: Settings) -> int:
    if options.limit_per_domain is not None and options.limit_per_domain < 1:
        raise RequestError("--limit-per-domain must be >= 1", param="limit-per-domain")
    report, items = asyncio.run(measure(options, settings))
    _write(options.json, json.dumps(report, indent=2) + "\n")
    _write(options.items_out, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in items))
    if options.markdown is not None:
        _write(options.markdown, markdown(report))
    if options.plot is not None:
        plot(report, options.plot)
    _summary(report)
    return 0


async def measure(options: Options, settings: Settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    started = time.perf_counter()
    rows = load_rows(options.data, options.limit_per_domain)
    routed, names = route_rows(rows, settings)
    policies = load_policies_dir(settings.policies_dir, names)
    session = await ReplaySession.open(settings, concurrency=options.concurrency, show_progress=not options.quiet)
    try:
        t0 = time.perf_counter()
        gens = await session.full(rows)
        full_s = time.perf_counter() - t0
        chosen = [policy_for(policies, d) for d in routed]
        t0 = time.perf_counter()
        outs = await session.apply(chosen, gens)
        policy_s = time.perf_counter() - t0
        sample = probe_sample(rows, options.probe_baseline_rows)
        probe_outs = await session.apply(
            [probe_only_policy(rows[i].domain) for i in sample], [gens[i] for i in sample], desc="probe-only baseline"
        )
        facts = {
            "model": session.worker.model_id,
            "cap": FULL_CAP,
            "full_generated": session.generated_now,
            "full_s": round(full_s, 1),
            "policy_s": round(policy_s, 1),
            "probes_asked": session.probes.asked,
            "probes_generated": session.probes.generated,
            "policy_probe_tokens": sum(o.probe_tokens for o in outs),
            "routing_accuracy": routing_accuracy(rows, routed),
            "policies": {name: p.version for name, p in sorted(policies.items())},
        }
    finally:
        await session.close()
    items = [_item(r, g, o) for r, g, o in zip(rows, gens, outs, strict=True)]
    facts["wall_s"] = round(time.perf_counter() - started, 1)
    report = build_report(items, [g.texts for g in gens], FULL_CAP, run=facts)
    if sample:
        report["baselines"]["probe_only"] = probe_baseline(
            [_item(rows[i], gens[i], o) for i, o in zip(sample, probe_outs, strict=True)],
            [items[i] for i in sample],
            sum(o.probe_tokens for o in probe_outs),
            options.probe_baseline_rows,
        )
    lines = [
        {
            "id": r.id,
            "domain": r.domain,
            "text_full": g.text,
            "tokens_full": g.tokens,
            "text_policy": o.text,
            "tokens_policy": o.tokens,
            "stop_rule": o.stop_rule,
            "routed_domain": d,
        }
        for r, g, o, d in zip(rows, gens, outs, routed, strict=True)
    ]
    return report, lines


def probe_sample(rows: list[Row], per_domain: int) -> list[int]:
    """Indices of the first ``per_domain`` rows of each domain (all rows for -1, none for 0)."""
    if per_domain < 0:
        return list(range(len(rows)))
    seen: dict[str, int] = {}
    picked = []
    for i, row in enumerate(rows):
        if seen.get(row.domain, 0) < per_domain:
            seen[row.domain] = seen.get(row.domain, 0) + 1
            picked.append(i)
    return picked


def probe_baseline(
    probe_items: list[Item], policy_items: list[Item], probe_tokens: int, per_domain: int
) -> dict[str, Any]:
    """The probe-only figures on its sample, with the per-domain policies' figures on the same rows."""
    policy = probe_only_policy(DEFAULT_DOMAIN)
    return {
        "policy": {
            "max_tokens": policy.max_tokens,
            "min_tokens": policy.min_tokens,
            "rules": [{"probe": msgspec.to_builtins(PROBE_ONLY)}],
        },
        "sample": "every row" if per_domain < 0 else f"first {per_domain} rows of each domain",
        **overall(probe_items),
        "probe_tokens": probe_tokens,
        "domains": per_domain_figures(probe_items),
        "per_domain_policies_on_sample": {
            "overall": overall(policy_items),
            "domains": per_domain_figures(policy_items),
        },
    }


def _item(row: Row, gen: Generation, out: PolicyOutput) -> Item:
    return Item(row.domain, row.gold, gen.text, gen.tokens, out.text, out.tokens)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _summary(report: dict[str, Any]) -> None:
    sys.stdout.write(markdown(report))
