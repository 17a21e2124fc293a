"""Documents read with positions, decoded strictly: every problem located by line and field path.

``read_yaml`` gives a YAML (or JSON) document as plain data with ``path -> line`` from the node
marks, and its duplicate keys; ``decode_struct`` decodes a mapping into a strict ``msgspec.Struct``
field by field, so one bad field does not hide the next. ``Problems`` collects what is wrong,
each at the nearest line known for its path (line 0 for an already-decoded JSON object).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

import msgspec
import yaml

from gateway.errors import DefinitionError, Problem

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


class Problems:
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


def convert(value: Any, type_: Any, path: PathKey, out: Problems) -> Any:
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


def check_keys(
    value: Mapping[Any, Any],
    allowed: Collection[str],
    required: Collection[str],
    path: PathKey,
    out: Problems,
) -> None:
    for key in value:
        if key not in allowed:
            out.add((*path, str(key)), f"unknown key {str(key)!r}; allowed keys: {', '.join(allowed)}")
    for key in required:
        if key not in value:
            out.add((*path, key), "missing required key")


def decode_struct(value: Any, cls: type[msgspec.Struct], path: PathKey, out: Problems) -> Any:
    """A strict Struct from a mapping, reporting every bad field; ``UNSET`` when anything is wrong."""
    if not isinstance(value, dict):
        out.add(path, f"must be a mapping, got {describe_type(value)}")
        return msgspec.UNSET
    fields = msgspec.structs.fields(cls)
    required = [f.name for f in fields if f.required]
    before = len(out.items)
    check_keys(value, [f.name for f in fields], required, path, out)
    for f in fields:
        if f.name in value:
            convert(value[f.name], f.type, (*path, f.name), out)
    if len(out.items) > before:
        return msgspec.UNSET
    return convert(value, cls, path, out)  # runs the class's own __post_init__ checks
