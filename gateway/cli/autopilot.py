"""``stopgate autopilot status|propose|apply``: the operator's view of autopilot, straight from Redis.

``status`` shows per domain the samples held, the active version's agreement and bound (replayed
over the samples held, and on its own fresh samples), the last run and the last change with its
reason. ``propose DOMAIN`` tunes now and keeps the result as a proposal (no version is written);
``apply DOMAIN`` writes the pending proposal. Like ``stopgate policies``, this talks to the Redis the
gateways use, so every replica picks an applied change up at once. Without the classifier's
embedder here, a ``semantic`` domain shows no agreement (the gateway's ``GET /admin/autopilot`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from gateway.autopilot import build_autopilot
from gateway.autopilot.runner import AutopilotRunner
from gateway.cli.common import add_settings_flags, settings_from_args
from gateway.cli.policies import known_domains
from gateway.errors import ConfigError, StoreUnavailable, UnknownDomain
from gateway.policy.records import redact
from gateway.policy.schema import DEFAULT_DOMAIN
from gateway.settings import Settings

T = TypeVar("T")


def _run(settings: Settings, work: Callable[[AutopilotRunner], Awaitable[T]]) -> T:
    if not settings.redis_url:
        raise ConfigError("this command needs the gateways' Redis: set STOPGATE_REDIS_URL or --redis-url")
    domains = sorted({*known_domains(settings.domains_dir), DEFAULT_DOMAIN})

    async def main() -> T:
        autopilot = build_autopilot(settings, settings.redis_url, domains)
        try:
            return await work(autopilot.runner)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis at {redact(settings.redis_url)} is unreachable: {exc}") from None
        finally:
            await autopilot.samples.close()  # closes the shared client

    return asyncio.run(main())


def _check(settings: Settings, domain: str) -> None:
    names = {*known_domains(settings.domains_dir), DEFAULT_DOMAIN}
    if domain not in names:
        raise UnknownDomain(f"unknown domain {domain!r}; known: {', '.join(sorted(names))}")


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else "-"


def status_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The human form of ``AutopilotRunner.status``."""
    lines = []
    for row in rows:
        spec = row.get("autopilot")
        head = f"{row['domain']}: v{row['version']}" if row.get("version") else f"{row['domain']}: no policy of its own"
        if not spec:
            lines.append(f"{head}, autopilot off, {row['samples_held']} samples held")
            continue
        lines.append(
            f"{head}, autopilot {spec['mode']} target {spec['target_agreement']} ({row['metric']}), "
            f"{row['samples_held']} samples held of {row.get('samples_needed', spec['min_samples'])} needed"
        )
        cur = row.get("current")
        if cur:
            lines.append(
                f"  current: agreement {cur['agreement']:.3f}, bound {cur['agreement_lower_bound']:.3f} "
                f"on {cur['samples']} samples (replay)"
            )
        fresh = row.get("fresh")
        if fresh:
            lines.append(
                f"  fresh:   agreement {fresh['agreement']:.3f}, bound {fresh['agreement_lower_bound']:.3f} "
                f"on {fresh['samples']} samples of this version (live)"
            )
        for label in ("last_change", "last_run", "proposal"):
            item = row.get(label)
            if item:
                version = f" -> v{item['version']}" if item.get("version") else ""
                lines.append(
                    f"  {label.replace('_', ' ')}: {_when(item.get('ts'))} {item['action']}{version}: {item['reason']}"
                )
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    rows = _run(settings, lambda runner: runner.status())
    if args.domain:
        _check(settings, args.domain)
        rows = [r for r in rows if r["domain"] == args.domain]
    if args.format == "json":
        print(json.dumps({"data": rows}))
    else:
        print("\n".join(status_lines(rows)))
    return 0


def cmd_propose(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _check(settings, args.domain)
    report = _run(settings, lambda runner: runner.run_domain(args.domain, mode="propose", force=True))
    if report is None:
        print(f"{args.domain}: another replica is tuning; retry shortly")
        return 1
    print(json.dumps(report) if args.format == "json" else f"{args.domain}: {report['action']}: {report['reason']}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _check(settings, args.domain)
    report = _run(settings, lambda runner: runner.apply_proposal(args.domain))
    print(f"{args.domain}: v{report['version']} is now active ({report['reason']})")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.autopilot.study import StudyOptions, run_study

    settings = settings_from_args(args)
    options = StudyOptions(
        data=Path(args.data),
        limit_per_domain=args.limit_per_domain,
        domains=tuple(d for d in (args.domains or "").split(",") if d),
        start=args.start,
        target=args.target,
        min_samples=args.min_samples,
        tune_every=args.tune_every or settings.autopilot_tune_every,
        interval_s=float(settings.autopilot_interval_s if args.interval_s is None else args.interval_s),
        gap_s=args.gap_s,
    )
    results = asyncio.run(run_study(settings, options))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"options": {**dataclasses.asdict(options), "data": str(options.data)}, "data": results})
        )
    print(
        "| domain | requests | autopilot saved | agreement | changes "
        "| shipped saved | agreement | start saved | agreement |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        a, s, f = r["autopilot"], r["shipped"], r["start"]
        print(
            f"| {r['domain']} | {a['requests']} | {a['saved_pct']}% | {a['agreement']} | {len(r['changes'])} "
            f"| {s['saved_pct']}% | {s['agreement']} | {f['saved_pct']}% | {f['agreement']} |"
        )
    return 0


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("autopilot", help="autopilot: per-domain tuning from sampled live traffic")
    sub = group.add_subparsers(dest="autopilot_command", required=True)
    p = sub.add_parser("status", help="samples held, agreement and bound, last change and why, per domain")
    p.add_argument("domain", nargs="?", default=None)
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_settings_flags(p)
    p.set_defaults(handler=cmd_status)
    p = sub.add_parser("propose", help="tune DOMAIN now and keep the result as a proposal (writes no version)")
    p.add_argument("domain")
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_settings_flags(p)
    p.set_defaults(handler=cmd_propose)
    p = sub.add_parser("apply", help="write DOMAIN's pending proposal as its next version")
    p.add_argument("domain")
    add_settings_flags(p)
    p.set_defaults(handler=cmd_apply)
    p = sub.add_parser("study", help="offline: autopilot replayed over a data set's full generations, in arrival order")
    p.add_argument("--data", required=True, help="JSONL rows (id, domain, query)")
    p.add_argument("--limit-per-domain", type=int, default=None)
    p.add_argument("--domains", default=None, help="comma-separated (default: all in the data)")
    p.add_argument("--start", choices=("loose", "shipped"), default="loose")
    p.add_argument("--target", type=float, default=0.9, help="target_agreement")
    p.add_argument("--min-samples", type=int, default=30)
    p.add_argument("--tune-every", type=int, default=None)
    p.add_argument("--interval-s", type=float, default=None)
    p.add_argument("--gap-s", type=float, default=10.0, help="simulated seconds between two requests")
    p.add_argument("--json", default=None, help="write every figure and change here")
    add_settings_flags(p)
    p.set_defaults(handler=cmd_study)
