"""Writing a tuned policy back into its YAML file, keeping the file's layout and comments.

Only ``version``, ``max_tokens``, ``min_tokens`` and the ``rules`` block are replaced; each rule
is written on one line with the keys the file already had plus every non-default field, so the
diff an operator reviews shows only what calibration moved.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from gateway.policy.rules import RuleSpec
from gateway.policy.schema import Policy

_TOP = re.compile(r"^(?P<key>[A-Za-z_]+):(?P<rest>.*)$")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if (
        re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ .-]*", text)
        and text.strip() == text
        and text not in ("true", "false", "null", "yes", "no")
    ):
        return text
    return json.dumps(text)


def rule_line(rule: RuleSpec, keys: Sequence[str]) -> str:
    """``  - kind: {k: v, ...}`` with ``keys`` (the file's own) plus every non-default field."""
    fields = msgspec.structs.fields(rule)
    shown = [f.name for f in fields if f.name in keys]
    for f in fields:
        value = getattr(rule, f.name)
        if f.name not in shown and (f.required or value != f.default):
            shown.append(f.name)
    inner = ", ".join(f"{name}: {_scalar(getattr(rule, name))}" for name in shown)
    return f"  - {rule.kind}: {{{inner}}}"


def render_policy(original: str, policy: Policy) -> str:
    """``original`` (the YAML file) with ``version``, budgets and the rules block replaced."""
    import yaml

    doc = yaml.safe_load(original) or {}
    old_rules = doc.get("rules") or []
    keys: list[list[str]] = []
    for item in old_rules:
        params = next(iter(item.values())) if isinstance(item, dict) and item else None
        keys.append(list(params) if isinstance(params, dict) else [])
    rules = [rule_line(r, keys[i] if i < len(keys) else []) for i, r in enumerate(policy.rules)]
    values = {"version": policy.version, "max_tokens": policy.max_tokens, "min_tokens": policy.min_tokens}
    out: list[str] = []
    lines = original.splitlines()
    i = 0
    while i < len(lines):
        m = _TOP.match(lines[i])
        if m and m["key"] in values:
            out.append(f"{m['key']}: {values.pop(m['key'])}")
        elif m and m["key"] == "rules":
            out.append("rules:")
            out += rules
            i += 1
            while i < len(lines) and not _TOP.match(lines[i]):
                i += 1
            continue
        else:
            out.append(lines[i])
        i += 1
    out += [f"{k}: {v}" for k, v in values.items()]
    return "\n".join(out) + "\n"


def diff(old: str, new: str, path: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{path}", f"b/{path}"))
