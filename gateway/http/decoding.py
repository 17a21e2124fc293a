"""The one JSON decoder for untrusted request bodies: every way a body can be hostile is a 400.

``decode_json`` turns bytes from the network into plain Python values, or raises ``RequestError``
(400, the OpenAI error object) naming what is wrong; it never raises anything else, so no body can
become a 500. What it refuses, beyond malformed JSON:

- bytes that are not UTF-8, and ``\\ud800``-style escapes that leave a lone surrogate (which would
  break every later encode: the tokenizer, the audit record, the response);
- nesting deeper than ``MAX_DEPTH`` (a 100,000-deep ``[[[...]]]`` used to exhaust the recursion limit);
- integers longer than ``MAX_INT_DIGITS`` digits and numbers that overflow a float (``1e999``),
  ``NaN`` and ``Infinity``;
- duplicate keys in one object (parsers disagree on which one wins: a smuggling vector).

Typed decoding goes through ``decode_as``: the plain value is converted with ``msgspec.convert`` and a
mismatch is a ``RequestError`` naming the field. The body size is capped before this, by the server.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

import msgspec

from gateway.errors import RequestError

T = TypeVar("T")

MAX_DEPTH = 64
"""Objects and arrays nested deeper than this are refused (OpenAI requests nest about 6 deep)."""

MAX_INT_DIGITS = 40
"""Longer integer literals are refused (a uint64 has 20 digits; Python would parse thousands, slowly)."""


class _Refused(ValueError):
    """Raised from inside the parser's hooks; turned into a ``RequestError`` by ``decode_json``."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {_show(key)} in one object")
            seen.add(key)
    return out


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"integer with {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    if len(text) > 400:
        raise _Refused("number literal too long")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number out of range: {text[:40]}")
    return value


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant, strict=True
)


def _show(text: str) -> str:
    return repr(text[:40] + ("…" if len(text) > 40 else ""))


def _check_tree(value: Any, max_depth: int) -> None:
    """Depth and lone surrogates, walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_text(node)
        elif isinstance(node, dict | list):
            if depth >= max_depth:
                raise _Refused(f"nested deeper than {max_depth} levels")
            if isinstance(node, dict):
                for key, item in node.items():
                    _check_text(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in node)


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _Refused("a string holds an unpaired surrogate escape (e.g. \\ud800)") from None


def decode_json(body: bytes | bytearray | memoryview | str, *, max_depth: int = MAX_DEPTH, what: str = "body") -> Any:
    """Parse untrusted JSON into plain values (dict, list, str, int, float, bool, None) or raise a 400."""
    try:
        text = body if isinstance(body, str) else bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"The request {what} is not valid UTF-8 (byte {exc.start}).") from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a UTF-8 byte order mark is tolerated, as RFC 8259 allows
    if not text.strip():
        raise RequestError(f"The request {what} is empty; send a JSON object.")
    try:
        value = _decoder.decode(text)
        _check_tree(value, max_depth)
    except _Refused as exc:
        raise RequestError(f"The request {what} is refused: {exc}.") from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            f"The request {what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    except RecursionError:
        raise RequestError(f"The request {what} is refused: nested deeper than {max_depth} levels.") from None
    except (ValueError, OverflowError, MemoryError) as exc:
        raise RequestError(f"The request {what} is refused: {type(exc).__name__}.") from None
    return value


def decode_as(body: bytes | bytearray | memoryview | str, kind: type[T], *, what: str = "body") -> T:
    """``decode_json`` then a strict conversion into ``kind`` (a msgspec Struct); mismatches are 400s."""
    value = decode_json(body, what=what)
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise RequestError(f"Invalid request: {exc}", param=param_of(str(exc))) from None


def param_of(message: str) -> str | None:
    """The field a msgspec validation message points at (``... - at `$.messages[0].content```)."""
    if "at `$." in message:
        return message.rsplit("at `$.", 1)[1].rstrip("`")
    if "missing required field" in message:
        return message.rsplit("`", 2)[-2] if message.count("`") >= 2 else None
    return None
