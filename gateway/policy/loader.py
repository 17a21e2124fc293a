"""YAML or JSON → ``Policy``, strictly, reporting every problem with its file, line and field.

Types are checked field by field (so one bad field does not hide the next), unknown and duplicate
keys are errors, and then the semantic checks run: budgets, each rule's own ``check()``, and that
the document's domain exists and is the one the file (or URL) is for. Reading with positions and
strict struct decoding are ``gateway.policy.documents``; a JSON object handed over as a dict (admin
PUT) has line 0.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import msgspec

from gateway.errors import DefinitionError, Problem
from gateway.policy import rules as rule_specs
from gateway.policy.documents import PathKey, Problems, check_keys, convert, decode_struct, describe_type, read_yaml
from gateway.policy.quality import AutopilotSpec, QualitySpec
from gateway.policy.schema import DEFAULT_DOMAIN, FIELD_NAMES, MAX_TOKENS_CEILING, AuditSpec, Policy
from gateway.policy.thinking_spec import ThinkingSpec

_REQUIRED = ("domain", "max_tokens")


def _decode_rules(value: Any, out: Problems, at_path: PathKey = ("rules",)) -> tuple[rule_specs.RuleSpec, ...] | None:
    known = rule_specs.RULE_TYPES  # looked up now, so rule kinds added later are seen
    if not isinstance(value, list):
        out.add(
            at_path,
            f"must be a list of one-key mappings like '- repetition: {{ngram: 6}}', got {describe_type(value)}",
        )
        return None
    decoded: list[rule_specs.RuleSpec] = []
    for index, item in enumerate(value):
        at: PathKey = (*at_path, index)
        if not isinstance(item, dict) or len(item) != 1:
            got = f"a mapping with {len(item)} keys" if isinstance(item, dict) else describe_type(item)
            out.add(at, f"each rule is a one-key mapping {{kind: params}}, got {got}")
            continue
        ((kind, params),) = item.items()
        spec_cls = known.get(kind) if isinstance(kind, str) else None
        if spec_cls is None:
            out.add((*at, str(kind)), f"unknown rule kind {str(kind)!r}; known kinds: {', '.join(sorted(known))}")
            continue
        spec = decode_struct({} if params is None else params, spec_cls, (*at, kind), out)
        if spec is msgspec.UNSET:
            continue
        for field, message in spec.check():
            out.add((*at, kind, *(field.split(".") if field else ())), message)
        decoded.append(spec)
    return tuple(decoded) if len(decoded) == len(value) else None


_SECTIONS: dict[str, type[msgspec.Struct]] = {"audit": AuditSpec, "quality": QualitySpec, "autopilot": AutopilotSpec}


def _decode_section(raw: Any, cls: type[msgspec.Struct], path: PathKey, out: Problems) -> Any:
    """A section struct, then its own ``check()`` (if it has one) with located problems."""
    value = decode_struct(raw, cls, path, out)
    if value is not msgspec.UNSET and hasattr(value, "check"):
        for field, message in value.check():
            out.add((*path, *field.split(".")), message)
    return value


def _decode_thinking(raw: Any, out: Problems) -> Any:
    """``thinking``: its scalar fields strictly, its ``rules`` like the top-level ones."""
    if not isinstance(raw, dict):
        out.add(("thinking",), f"must be a mapping, got {describe_type(raw)}")
        return msgspec.UNSET
    rules = _decode_rules(raw["rules"], out, ("thinking", "rules")) if "rules" in raw else ()
    rest = {k: v for k, v in raw.items() if k != "rules"}
    if isinstance(rest.get("mode"), bool):  # YAML 1.1 reads a bare on/off as a boolean
        rest["mode"] = "on" if rest["mode"] else "off"
    value = _decode_section(rest, ThinkingSpec, ("thinking",), out)
    if value is msgspec.UNSET or rules is None:
        return msgspec.UNSET
    value = msgspec.structs.replace(value, rules=rules)
    for field, message in value.check():  # the checks that need the rules (the rest ran above)
        if field.startswith("rules."):
            out.add(("thinking", *(int(p) if p.isdigit() else p for p in field.split("."))), message)
    return value


def _semantic(values: dict[str, Any], domains: Collection[str], expect_domain: str | None, out: Problems) -> None:
    domain = values.get("domain")
    if isinstance(domain, str):
        allowed = {*domains, DEFAULT_DOMAIN}
        if domain not in allowed:
            out.add(("domain",), f"unknown domain {domain!r}; known domains: {', '.join(sorted(allowed))}")
        elif expect_domain is not None and domain != expect_domain:
            out.add(("domain",), f"{domain!r} does not match {expect_domain!r}, the domain {out.source} is for")
    version = values.get("version")
    if isinstance(version, int) and version < 1:
        out.add(("version",), "must be >= 1")
    max_tokens, min_tokens = values.get("max_tokens"), values.get("min_tokens")
    if isinstance(max_tokens, int) and not 0 < max_tokens <= MAX_TOKENS_CEILING:
        out.add(("max_tokens",), f"must be between 1 and {MAX_TOKENS_CEILING}")
    if isinstance(min_tokens, int):
        if min_tokens < 0:
            out.add(("min_tokens",), "must be >= 0")
        elif isinstance(max_tokens, int) and min_tokens >= max_tokens > 0:
            out.add(("min_tokens",), f"must be less than max_tokens ({max_tokens})")
    rate = values.get("sample_full_rate")
    if isinstance(rate, float) and not 0.0 <= rate <= 1.0:
        out.add(("sample_full_rate",), "must be between 0 and 1")


def _decode_policy(data: Any, domains: Collection[str], expect_domain: str | None, out: Problems) -> Policy | None:
    if not isinstance(data, dict):
        out.add((), f"a policy document must be a mapping, got {describe_type(data)}")
        return None
    check_keys(data, FIELD_NAMES, _REQUIRED, (), out)
    values: dict[str, Any] = {}
    for f in msgspec.structs.fields(Policy):
        if f.name not in data:
            continue
        raw = data[f.name]
        if f.name == "rules":
            value: Any = _decode_rules(raw, out)
        elif f.name == "thinking":
            value = _decode_thinking(raw, out)
        elif f.name in _SECTIONS:
            value = _decode_section(raw, _SECTIONS[f.name], (f.name,), out)
        else:
            value = convert(raw, f.type, (f.name,), out)
        if value is not None and value is not msgspec.UNSET:
            values[f.name] = value
    _semantic(values, domains, expect_domain, out)
    if out.items:
        return None
    return Policy(**values)


def parse_policy(
    data: str | bytes | Mapping[str, Any],
    *,
    source: str,
    domains: Collection[str],
    expect_domain: str | None = None,
) -> Policy:
    """A valid ``Policy`` or ``DefinitionError`` listing every problem (file, line, field, message).

    ``data`` is YAML (or JSON) text, or an already-decoded JSON object (lines are then 0).
    ``expect_domain`` is the domain the file name or URL says this document is for.
    """
    lines: dict[PathKey, int] | None = None
    duplicates: list[Problem] = []
    if isinstance(data, str | bytes):
        data, lines, duplicates = read_yaml(data, source)
    out = Problems(source, lines)
    out.items.extend(duplicates)
    try:
        policy = _decode_policy(data, domains, expect_domain, out)
    except RecursionError:
        out.add((), "document is nested too deeply")
        policy = None
    if policy is None or out.items:
        problems = sorted(out.items, key=lambda p: p.line) or [Problem(source, 0, "", "invalid policy")]
        raise DefinitionError(problems)
    return policy


def load_policies_dir(path: str | Path, domains: Collection[str]) -> dict[str, Policy]:
    """Every ``*.yaml``/``*.yml`` in ``path``, one per domain (file name = domain) plus ``default``."""
    path = Path(path)
    if not path.is_dir():
        raise DefinitionError([Problem(str(path), 0, "", "policies directory does not exist")])
    files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    problems: list[Problem] = []
    policies: dict[str, Policy] = {}
    stems: dict[str, Path] = {}
    for file in files:
        if file.stem in stems:
            problems.append(
                Problem(
                    str(file),
                    0,
                    "",
                    f"a second policy file for {file.stem!r} (first: {stems[file.stem].name})",
                )
            )
            continue
        stems[file.stem] = file
        try:
            policies[file.stem] = parse_policy(
                file.read_bytes(), source=str(file), domains=domains, expect_domain=file.stem
            )
        except DefinitionError as exc:
            problems.extend(exc.problems)
        except OSError as exc:
            problems.append(Problem(str(file), 0, "", f"cannot read: {exc.strerror or exc}"))
    if DEFAULT_DOMAIN not in stems:
        problems.append(
            Problem(
                str(path / f"{DEFAULT_DOMAIN}.yaml"),
                0,
                "",
                "missing: the default policy is required (domains without a policy use it)",
            )
        )
    if problems:
        raise DefinitionError(problems)
    return policies
