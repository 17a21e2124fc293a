"""Whether a policy's regex is fit to run after every token: it compiles, cannot backtrack without
bound, and does not match the empty string (which would stop every generation at once)."""

from __future__ import annotations

import importlib
import re
from typing import Any

# The stdlib's own regex parser: private but stable, and the only way to inspect a pattern's
# structure without writing a parser (typeshed does not describe it, hence Any).
sre_parse: Any = importlib.import_module("re._parser")
sre_c: Any = importlib.import_module("re._constants")

MAX_PATTERN_CHARS = 500


def regex_problems(pattern: str, ignore_case: bool = False) -> list[str]:
    """Why ``pattern`` is unfit to run after every token (empty when it is fine).

    Beyond compiling, it refuses the constructs that make backtracking blow up (an unbounded
    repeat inside another unbounded repeat, such as ``(a+)+``; backreferences) and patterns
    that match the empty string, which would stop every generation at once.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        return [f"is {len(pattern)} characters long, at most {MAX_PATTERN_CHARS} allowed"]
    try:
        compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        return [f"does not compile: {exc}"]
    out = _unsafe_constructs(list(parsed), inside_unbounded=False)
    if compiled.search("") is not None:
        out.append("matches the empty string, so it would stop every generation at once")
    return sorted(set(out))


_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT)


def _unsafe_constructs(items: list[tuple[Any, Any]], *, inside_unbounded: bool) -> list[str]:
    out: list[str] = []
    for op, arg in items:
        if op in (sre_c.GROUPREF, sre_c.GROUPREF_EXISTS):
            out.append("uses a backreference, which cannot be matched in bounded time")
        elif op in _REPEATS:
            _low, high, body = arg
            unbounded = high == sre_c.MAXREPEAT or high > 256
            if inside_unbounded and unbounded:
                out.append("nests an unbounded repeat inside another (catastrophic backtracking)")
            out += _unsafe_constructs(list(body), inside_unbounded=inside_unbounded or unbounded)
        elif op == sre_c.SUBPATTERN:
            out += _unsafe_constructs(list(arg[3]), inside_unbounded=inside_unbounded)
        elif op == sre_c.BRANCH:
            for branch in arg[1]:
                out += _unsafe_constructs(list(branch), inside_unbounded=inside_unbounded)
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            out += _unsafe_constructs(list(arg[1]), inside_unbounded=inside_unbounded)
        elif op == sre_c.ATOMIC_GROUP:
            out += _unsafe_constructs(list(arg), inside_unbounded=inside_unbounded)
    return out
