"""``stopgate policies validate|diff|push|show|history|rollback``: the operator's side of the policy store.

``validate`` needs only the files (with a Redis configured it also warns about every file that differs
from its active version: the store wins on start unless ``STOPGATE_POLICIES_SOURCE=files``); ``diff``
compares each file with the active version; the others talk to the Redis the gateways use
(``STOPGATE_REDIS_URL``) through ``gateway.policy.records``, so every running replica picks the
change up through pub/sub. Domain names come from the ``name`` fields of the domain files (read
with plain YAML here, so this command never imports the classifier or torch).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from redis.exceptions import RedisError

from gateway.cli.common import add_settings_flags, settings_from_args
from gateway.domains import BUILTIN_DOMAINS
from gateway.errors import ConfigError, DefinitionError, StoreUnavailable, UnknownDomain
from gateway.policy.drift import Drift, find_drift
from gateway.policy.loader import load_policies_dir, parse_policy
from gateway.policy.records import PolicyRecords, PolicyVersion, connect, pick_version, redact
from gateway.policy.schema import DEFAULT_DOMAIN, Policy
from gateway.settings import Settings

DEFAULT_DOMAINS = BUILTIN_DOMAINS

T = TypeVar("T")


def known_domains(domains_dir: Path) -> list[str]:
    """The ``name`` of every domain file in ``domains_dir``; the built-in six if the dir is missing."""
    if not domains_dir.is_dir():
        return list(DEFAULT_DOMAINS)
    names = []
    for file in sorted([*domains_dir.glob("*.yaml"), *domains_dir.glob("*.yml")]):
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{file}: cannot read the domain name: {exc}") from None
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{file}: a domain file needs a 'name'")
        names.append(name)
    return names or list(DEFAULT_DOMAINS)


def _domains(args: argparse.Namespace, settings: Settings) -> list[str]:
    if args.known_domains:
        return [d.strip() for d in args.known_domains.split(",") if d.strip()]
    return known_domains(settings.domains_dir)


def _load(args: argparse.Namespace, settings: Settings) -> dict[str, Policy] | None:
    """The policies in DIR (or the configured dir); prints every problem and returns None if invalid."""
    directory = args.dir or settings.policies_dir
    try:
        return load_policies_dir(directory, _domains(args, settings))
    except DefinitionError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"stopgate: {len(exc.problems)} problem(s) in {directory}", file=sys.stderr)
        return None


def _run_redis(settings: Settings, work: Callable[[PolicyRecords], Awaitable[T]]) -> T:
    if not settings.redis_url:
        raise ConfigError("this command needs the gateways' Redis: set STOPGATE_REDIS_URL or --redis-url")

    async def main() -> T:
        client = connect(settings.redis_url)
        try:
            return await work(PolicyRecords(client))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis at {redact(settings.redis_url)} is unreachable: {exc}") from None
        finally:
            await client.aclose()

    return asyncio.run(main())


def _check_domain(domain: str, domains: list[str]) -> None:
    if domain not in {*domains, DEFAULT_DOMAIN}:
        raise UnknownDomain(f"unknown domain {domain!r}; known: {', '.join(sorted({*domains, DEFAULT_DOMAIN}))}")


def _print_document(record: PolicyVersion, fmt: str) -> None:
    if fmt == "json":
        print(
            json.dumps(
                {
                    "domain": record.domain,
                    "version": record.version,
                    "hash": record.hash,
                    "policy": record.full_document(),
                }
            )
        )
        return
    print(f"# {record.domain} v{record.version} sha256:{record.hash[:16]} ({record.source})")
    print(yaml.safe_dump(record.full_document(), sort_keys=False, allow_unicode=True), end="")


def cmd_validate(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    policies = _load(args, settings)
    if policies is None:
        return 1
    print(f"ok: {len(policies)} policies valid ({', '.join(sorted(policies))})")
    if settings.redis_url:  # files that are valid but not live: say so (the store wins on start)
        try:
            drifts = _run_redis(settings, lambda records: _drift(records, policies))
        except StoreUnavailable as exc:
            print(f"stopgate: note: not compared with the active versions: {exc.message}", file=sys.stderr)
            return 0
        for drift in drifts:
            print(f"warning: {drift.describe(settings.policies_source)}", file=sys.stderr)
    return 0


async def _drift(records: PolicyRecords, policies: dict[str, Policy]) -> list[Drift]:
    active = {d: (r.version, r.hash, r.source) for d, r in (await records.read_all(policies)).items()}
    return find_drift({d: p.content_hash() for d, p in policies.items()}, active)


def cmd_diff(args: argparse.Namespace) -> int:
    """Each domain: its file against the active version in Redis; exit 1 when any differs."""
    settings = settings_from_args(args)
    policies = _load(args, settings)
    if policies is None:
        return 1
    drifts = {d.domain: d for d in _run_redis(settings, lambda records: _drift(records, policies))}
    for domain, policy in sorted(policies.items()):
        drift = drifts.get(domain)
        if drift is None:
            print(f"{domain}: same as the active version (sha256:{policy.content_hash()[:12]})")
        else:
            print(f"{domain}: {drift.describe(settings.policies_source).split(': ', 1)[1]}")
    return 1 if drifts else 0


def cmd_push(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    policies = _load(args, settings)
    if policies is None:
        return 1

    async def push(records: PolicyRecords) -> list[str]:
        active = await records.read_all(policies)
        lines = []
        for domain, policy in sorted(policies.items()):
            current = active.get(domain)
            if current is not None and current.hash == policy.content_hash():
                lines.append(f"{domain}: v{current.version} unchanged")
                continue
            written = await records.write(policy, source="cli:push")
            assert written is not None
            lines.append(f"{domain}: v{written.version} published")
        return lines

    for line in _run_redis(settings, push):
        print(line)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    domains = _domains(args, settings)
    wanted = [args.domain] if args.domain else sorted({*domains, DEFAULT_DOMAIN})
    for domain in wanted:
        _check_domain(domain, domains)
    found = _run_redis(settings, lambda records: records.read_all(wanted))
    for index, domain in enumerate(wanted):
        if args.format == "yaml" and index:
            print("---")
        record = found.get(domain)
        if record is None:
            print(f"# {domain}: no policy of its own in Redis (it uses {DEFAULT_DOMAIN!r})")
            continue
        _print_document(record, args.format)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _check_domain(args.domain, _domains(args, settings))

    async def read(records: PolicyRecords) -> tuple[list[PolicyVersion], PolicyVersion | None]:
        return await records.history(args.domain), await records.read(args.domain)

    entries, active = _run_redis(settings, read)
    if not entries:
        print(f"{args.domain}: no history in Redis")
    for entry in entries:
        mark = "*" if active is not None and active.version == entry.version else " "
        when = dt.datetime.fromtimestamp(entry.ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{mark} v{entry.version:<5} {when}  {entry.hash[:12]}  {entry.source}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    domains = _domains(args, settings)
    _check_domain(args.domain, domains)

    async def rollback(records: PolicyRecords) -> PolicyVersion:
        old = pick_version(await records.history(args.domain), args.domain, args.to)
        policy = parse_policy(
            old.full_document(), source=f"history v{args.to}", domains=domains, expect_domain=args.domain
        )
        written = await records.write(policy, source=f"rollback:v{args.to}")
        assert written is not None
        return written

    written = _run_redis(settings, rollback)
    print(f"{args.domain}: v{written.version} is now active (the document of v{args.to})")
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--known-domains",
        default=None,
        help="comma-separated domain names (default: the names in STOPGATE_DOMAINS_DIR)",
    )
    add_settings_flags(parser)


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("policies", help="validate, publish and inspect stopping policies")
    sub = group.add_subparsers(dest="policies_command", required=True)

    p = sub.add_parser("validate", help="check every policy file; exit 1 listing every problem")
    p.add_argument("dir", nargs="?", type=Path, default=None, help="policies directory (default: settings)")
    p.set_defaults(handler=cmd_validate)
    _add_common(p)

    p = sub.add_parser("diff", help="compare each policy file with the active version; exit 1 if any differs")
    p.add_argument("dir", nargs="?", type=Path, default=None, help="policies directory (default: settings)")
    p.set_defaults(handler=cmd_diff)
    _add_common(p)

    p = sub.add_parser("push", help="validate, then publish the changed policies to Redis")
    p.add_argument("dir", nargs="?", type=Path, default=None, help="policies directory (default: settings)")
    p.set_defaults(handler=cmd_push)
    _add_common(p)

    p = sub.add_parser("show", help="print the active policy documents from Redis")
    p.add_argument("domain", nargs="?", default=None)
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.set_defaults(handler=cmd_show)
    _add_common(p)

    p = sub.add_parser("history", help="list a domain's versions, newest first (* = active)")
    p.add_argument("domain")
    p.set_defaults(handler=cmd_history)
    _add_common(p)

    p = sub.add_parser("rollback", help="make an old version active again, as a new version")
    p.add_argument("domain")
    p.add_argument("--to", type=int, required=True, metavar="VERSION")
    p.set_defaults(handler=cmd_rollback)
    _add_common(p)
