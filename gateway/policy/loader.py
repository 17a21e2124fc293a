"""YAML or JSON → ``Policy``, strictly, reporting every problem with its file, line and field.

Types are checked field by field (so one bad field does not hide the next), unknown and duplicate
keys are errors, and then the semantic checks run: budgets, each rule's own ``check()``, and that
the document's domain exists and is the one the file (or URL) is for. Line numbers come from the
YAML node marks; a JSON object handed over as a dict (admin PUT) has line 0.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from gateway.errors import DefinitionError, Problem
from gateway.policy import rules as rule_specs
from gateway.policy.quality import AutopilotSpec, QualitySpec
from gateway.policy.schema import DEFAULT_DOMAIN, FIELD_NAMES, MAX_TOKENS_CEILING, AuditSpec, Policy
from gateway.policy.thinking_spec import ThinkingSpec

MAX_DOCUMENT_BYTES = 1_000_000

PathKey = tuple[str | int, ...]

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SafeLoader(_BaseLoader):
    """YAML 1.1 reads ``1e-05`` (no dot) as a string; JSON and YAML 1.2 read a number, and so do we."""


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
_MSGSPEC_AT = re.compile(r" - at `\$(?P<sub>.*)`$")
_REQUIRED = ("domain", "max_tokens")


def dotted(path: PathKey) -> str:
    """``("rules", 2, "repetition", "ngram")`` → ``rules[2].repetition.ngram``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for kind, name in (
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (dict, "mapping"),
        (list, "list"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


class _Problems:
    """Collects problems for one document, locating each path at its nearest known line."""

    def __init__(self, source: str, lines: Mapping[PathKey, int] | None) -> None:
        self.source = source
        self.lines = lines
        self.items: list[Problem] = []

    def line(self, path: PathKey) -> int:
        if self.lines is None:
            return 0
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found:
                return found
        return 0

    def add(self, path: PathKey, message: str) -> None:
        self.items.append(Problem(self.source, self.line(path), dotted(path), message))


# --- YAML with positions -------------------------------------------------------------------


def _walk(
    node: yaml.Node, path: PathKey, lines: dict[PathKey, int], dups: list[tuple[PathKey, int]], seen: set[int]
) -> None:
    if id(node) in seen:  # an alias: its lines are recorded where it was defined
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            if key == "<<" and key_node.tag == "tag:yaml.org,2002:merge":
                continue
            sub = (*path, key)
            if key in keys:
                dups.append((sub, key_node.start_mark.line + 1))
            keys.add(key)
            lines.setdefault(sub, key_node.start_mark.line + 1)
            _walk(value_node, sub, lines, dups, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.setdefault((*path, index), item.start_mark.line + 1)
            _walk(item, (*path, index), lines, dups, seen)


def read_yaml(text: str | bytes, source: str) -> tuple[Any, dict[PathKey, int], list[Problem]]:
    """One YAML document as plain data, ``path -> line``, and its duplicate keys as problems.

    Syntax errors raise ``DefinitionError`` at once (nothing else can be checked then).
    """
    if len(text) > MAX_DOCUMENT_BYTES:
        raise DefinitionError([Problem(source, 0, "", f"document larger than {MAX_DOCUMENT_BYTES} bytes")])
    lines: dict[PathKey, int] = {}
    dups: list[tuple[PathKey, int]] = []
    try:
        loader = _SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise DefinitionError([Problem(source, 1, "", "empty document")])
            lines[()] = node.start_mark.line + 1
            _walk(node, (), lines, dups, set())
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise DefinitionError([Problem(source, mark.line + 1 if mark else 0, "", message)]) from None
    except yaml.YAMLError as exc:
        raise DefinitionError([Problem(source, 0, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise DefinitionError([Problem(source, 0, "", "document is nested too deeply")]) from None
    return data, lines, [Problem(source, line, dotted(p), f"duplicate key {p[-1]!r}") for p, line in dups]


# --- structural decoding -------------------------------------------------------------------


def _convert(value: Any, type_: Any, path: PathKey, out: _Problems) -> Any:
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        message = str(exc)
        at = _MSGSPEC_AT.search(message)
        if at:
            message = message[: at.start()]
            sub = at.group("sub")
            out.items.append(Problem(out.source, out.line(path), dotted(path) + sub, message))
        else:
            out.add(path, message)
    except RecursionError:
        out.add(path, "value is nested too deeply")
    return msgspec.UNSET


def _check_keys(
    value: Mapping[Any, Any],
    allowed: Collection[str],
    required: Collection[str],
    path: PathKey,
    out: _Problems,
) -> None:
    for key in value:
        if key not in allowed:
            out.add((*path, str(key)), f"unknown key {str(key)!r}; allowed keys: {', '.join(allowed)}")
    for key in required:
        if key not in value:
            out.add((*path, key), "missing required key")


def decode_struct(value: Any, cls: type[msgspec.Struct], path: PathKey, out: _Problems) -> Any:
    """A strict Struct from a mapping, reporting every bad field; ``UNSET`` when anything is wrong."""
    if not isinstance(value, dict):
        out.add(path, f"must be a mapping, got {describe_type(value)}")
        return msgspec.UNSET
    fields = msgspec.structs.fields(cls)
    required = [f.name for f in fields if f.required]
    before = len(out.items)
    _check_keys(value, [f.name for f in fields], required, path, out)
    for f in fields:
        if f.name in value:
            _convert(value[f.name], f.type, (*path, f.name), out)
    if len(out.items) > before:
        return msgspec.UNSET
    return _convert(value, cls, path, out)  # runs the class's own __post_init__ checks


def _decode_rules(value: Any, out: _Problems, at_path: PathKey = ("rules",)) -> tuple[rule_specs.RuleSpec, ...] | None:
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


def _decode_section(raw: Any, cls: type[msgspec.Struct], path: PathKey, out: _Problems) -> Any:
    """A section struct, then its own ``check()`` (if it has one) with located problems."""
    value = decode_struct(raw, cls, path, out)
    if value is not msgspec.UNSET and hasattr(value, "check"):
        for field, message in value.check():
            out.add((*path, *field.split(".")), message)
    return value


def _decode_thinking(raw: Any, out: _Problems) -> Any:
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


def _semantic(values: dict[str, Any], domains: Collection[str], expect_domain: str | None, out: _Problems) -> None:
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


def _decode_policy(data: Any, domains: Collection[str], expect_domain: str | None, out: _Problems) -> Policy | None:
    if not isinstance(data, dict):
        out.add((), f"a policy document must be a mapping, got {describe_type(data)}")
        return None
    _check_keys(data, FIELD_NAMES, _REQUIRED, (), out)
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
            value = _convert(raw, f.type, (f.name,), out)
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
    out = _Problems(source, lines)
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
