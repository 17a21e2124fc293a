"""Hostile and malformed requests, for every edge that reads untrusted bytes. Each must get a 4xx with an
OpenAI error object, never a 5xx, and change nothing. ``{model}`` in a body is replaced by the served model."""

from __future__ import annotations

from dataclasses import dataclass, field

JSON = {"content-type": "application/json"}
YAML = {"content-type": "application/yaml"}


@dataclass(frozen=True)
class Bad:
    name: str
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    may_succeed: bool = False  # odd but meaningful (e.g. a budget the gateway caps): never a 5xx, 200 allowed


HI = b'{"model": "{model}", "messages": [{"role": "user", "content": "hi"}]'


def _chat(extra: str) -> bytes:
    return HI + b', "max_tokens": 4' + extra.encode() + b"}"


DEEP = b"[" * 100_000 + b"]" * 100_000

BODIES: list[Bad] = [
    Bad("deep nesting", b'{"model": "{model}", "messages": ' + DEEP + b"}"),
    Bad("deep object", b'{"a":' * 20_000 + b"1" + b"}" * 20_000),
    Bad("huge integer", _chat(', "seed": ' + "9" * 50_000)),
    Bad("huge exponent", _chat(', "temperature": 1e999999')),
    Bad("nan", _chat(', "temperature": NaN')),
    Bad("duplicate keys", _chat(', "max_tokens": 5')),
    Bad("invalid utf-8", b'{"model": "{model}", "messages": [{"role": "user", "content": "\xff\xfe\xfa"}]}'),
    Bad("lone surrogate", b'{"model": "{model}", "messages": [{"role": "user", "content": "\\udc00"}]}'),
    Bad("truncated", b'{"model": "{model}", "messages": [{"role"'),
    Bad("empty", b""),
    Bad("not an object", b"[1, 2, 3]"),
    Bad("a string", b'"hello"'),
    Bad("nul bytes", b"\x00" * 64),
    Bad("wrong content type", b"model=x&messages=y", {"content-type": "application/x-www-form-urlencoded"}),
    Bad("utf-16 body", '{"model": "x"}'.encode("utf-16")),
    Bad("trailing garbage", _chat("") + b" garbage"),
    Bad("messages not a list", b'{"model": "{model}", "messages": {"role": "user"}}'),
    Bad("max_tokens negative", HI + b', "max_tokens": -1}'),
    Bad("max_tokens huge", HI + b', "max_tokens": 1' + b"0" * 30 + b"}", may_succeed=True),
    Bad("temperature string", _chat(', "temperature": "hot"')),
    # The worker ignores fields it does not read (stop is the gateway's): there it may be served.
    Bad("stop of numbers", _chat(', "stop": [1, 2]'), may_succeed=True),
    Bad("prompt of garbage ids", b'{"model": "{model}", "prompt": [-1, 99999999999], "max_tokens": 2}'),
]
"""Bodies sent to every JSON edge."""

YAML_BODIES: list[Bad] = [
    Bad("yaml deep nesting", b"domain: factual\nrules: " + b"[" * 30_000 + b"]" * 30_000, YAML),
    Bad(
        "yaml alias bomb",
        (
            "domain: factual\na0: &a0 [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
            + "rules: *a8\n"
        ).encode(),
        YAML,
    ),
    Bad("yaml python tag", b"!!python/object/apply:os.system [echo hi]\n", YAML),
    Bad("yaml invalid utf-8", b"domain: \xff\xfe\n", YAML),
    Bad("yaml tabs and junk", b"domain:\t[\n  - {\n", YAML),
]
"""Policy documents for PUT /admin/policies/{domain} with Content-Type: application/yaml."""
