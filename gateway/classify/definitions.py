"""Domain definitions: the strict schema of ``domains/*.yaml`` and the loader that validates them.

A domain file holds ``name``, ``description``, ``examples`` (queries that belong to the domain)
and optional ``keywords``. Unknown keys, duplicate keys, wrong types and blank strings are errors;
every error is reported as a ``Problem`` naming the file, the 1-based line and the field path,
all of them at once in one ``DefinitionError``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml

from gateway.errors import DefinitionError, Problem

DOMAIN_FILE_SUFFIXES = (".yaml", ".yml")

Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Text = Annotated[str, msgspec.Meta(pattern=r"\S", max_length=4000)]


class DomainDefinition(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One domain: its name, what it covers, and example queries that belong to it."""

    name: Name
    description: Text
    examples: Annotated[tuple[Text, ...], msgspec.Meta(min_length=1)]
    keywords: tuple[Text, ...] = ()

    def digest(self) -> str:
        """A content hash of the definition (``DomainSet.digest`` combines them)."""
        return hashlib.sha256(msgspec.json.encode(self)).hexdigest()


@dataclass(frozen=True, slots=True)
class DomainSet:
    """The validated domains of one directory, in name order, with the file each came from."""

    domains: tuple[DomainDefinition, ...]
    files: dict[str, Path]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.domains)

    def digest(self) -> str:
        h = hashlib.sha256()
        for d in self.domains:
            h.update(d.digest().encode())
        return h.hexdigest()


_FIELDS = frozenset(f for f in DomainDefinition.__struct_fields__)
_REQUIRED = frozenset(("name", "description", "examples"))
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def parse_domain(text: str, file: str) -> DomainDefinition:
    """Validate one YAML document; raise ``DefinitionError`` listing every located problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 0
        reason = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError([Problem(file, line, "", f"invalid YAML: {reason}")]) from exc
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        raise DefinitionError([Problem(file, line, "", "expected a mapping with name, description and examples")])

    problems = _key_problems(root, file)
    if problems:
        raise DefinitionError(problems)
    try:
        return msgspec.convert(data, DomainDefinition, strict=True)
    except msgspec.ValidationError as exc:
        raise DefinitionError([_locate(str(exc), root, file)]) from exc


def load_domain_file(path: Path) -> DomainDefinition:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([Problem(str(path), 0, "", f"cannot read: {exc}")]) from exc
    return parse_domain(text, str(path))


def domain_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise DefinitionError([Problem(str(directory), 0, "", "domains directory does not exist")])
    return sorted(p for p in directory.iterdir() if p.suffix in DOMAIN_FILE_SUFFIXES and p.is_file())


def load_domains(directory: Path, *, required: Iterable[str] = ()) -> DomainSet:
    """Load and validate every domain file of ``directory``; all-or-nothing.

    ``required`` names domains that must be present (the classifier's fallback).
    """
    files = domain_files(directory)
    if not files:
        raise DefinitionError([Problem(str(directory), 0, "", "no domain files (*.yaml) found")])
    problems: list[Problem] = []
    found: dict[str, tuple[DomainDefinition, Path]] = {}
    for path in files:
        try:
            definition = load_domain_file(path)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            continue
        if definition.name in found:
            other = found[definition.name][1]
            problems.append(
                Problem(
                    str(path), _name_line(path), "name", f"domain {definition.name!r} is already defined in {other}"
                )
            )
            continue
        found[definition.name] = (definition, path)
    for name in required:
        if not problems and name not in found:
            problems.append(Problem(str(directory), 0, "name", f"the fallback domain {name!r} is not defined"))
    if problems:
        raise DefinitionError(problems)
    names = sorted(found)
    return DomainSet(domains=tuple(found[n][0] for n in names), files={n: found[n][1] for n in names})


def _key_problems(root: yaml.MappingNode, file: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for key_node, _ in root.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
        line = key_node.start_mark.line + 1
        if key not in _FIELDS:
            allowed = ", ".join(sorted(_FIELDS))
            problems.append(Problem(file, line, key, f"unknown field (allowed: {allowed})"))
        elif key in seen:
            problems.append(Problem(file, line, key, "duplicate field"))
        seen.add(key)
    for key in sorted(_REQUIRED - seen):
        problems.append(Problem(file, root.start_mark.line + 1, key, "missing required field"))
    return problems


def _locate(error: str, root: yaml.Node, file: str) -> Problem:
    """Turn msgspec's ``... - at `$.examples[3]``` into a field path and the node's line."""
    match = _AT.match(error)
    message, path = (match.group("msg"), match.group("path") or "") if match else (error, "")
    node: Any = root
    field_parts: list[str] = []
    for attr, index in _SEGMENT.findall(path):
        if attr:
            field_parts.append(attr)
            node = _child(node, attr)
        else:
            field_parts[-1:] = [f"{field_parts[-1] if field_parts else ''}[{index}]"]
            node = _item(node, int(index))
    line = node.start_mark.line + 1 if node is not None else 0
    return Problem(file, line, ".".join(field_parts), message)


def _child(node: Any, key: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            if key_node.value == key:
                return value
    return node


def _item(node: Any, index: int) -> Any:
    if isinstance(node, yaml.SequenceNode) and 0 <= index < len(node.value):
        return node.value[index]
    return node


def _name_line(path: Path) -> int:
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return 0
    node = _child(root, "name")
    return node.start_mark.line + 1 if node is not None and node is not root else 0
