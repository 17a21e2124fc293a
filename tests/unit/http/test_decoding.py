"""The untrusted-JSON decoder and the request parsers on it: hostile bodies are 400s, never anything else."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import DefinitionError, RequestError
from gateway.http.admin_policies import _document, _rollback_target
from gateway.http.classify import parse_classify_body
from gateway.http.decoding import MAX_DEPTH, decode_as, decode_json
from gateway.http.protocol import parse_chat_request
from gateway.http.worker_request import parse_worker_request
from gateway.policy.loader import parse_policy

DOMAINS = frozenset({"math", "code", "default"})
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

HOSTILE: dict[str, bytes] = {
    "deep array": b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "deep object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "just over the depth": b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
    "huge integer": b'{"max_tokens": ' + b"9" * 100_000 + b"}",
    "huge exponent": b'{"temperature": 1e99999}',
    "long float": b'{"temperature": 0.' + b"1" * 10_000 + b"}",
    "nan": b'{"temperature": NaN}',
    "infinity": b'{"temperature": -Infinity}',
    "duplicate keys": b'{"model": "a", "model": "b"}',
    "invalid utf-8": b'{"model": "\xff\xfe"}',
    "overlong utf-8": b'{"model": "\xc0\xaf"}',
    "lone surrogate": b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
    "lone surrogate key": b'{"\\udfff": 1}',
    "truncated": b'{"messages": [{"role": "user"',
    "empty": b"",
    "whitespace": b" \n\t ",
    "nul bytes": b"\x00\x00\x00",
    "utf-16": '{"model": "x"}'.encode("utf-16"),
    "trailing garbage": b'{"model": "x"} {"model": "y"}',
    "control char in string": b'{"model": "a\x01b"}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bodies_are_request_errors(name):
    """Every hostile body is refused with a RequestError (a 400), never another exception."""
    with pytest.raises(RequestError) as info:
        decode_json(HOSTILE[name])
    assert info.value.message


def test_what_it_accepts_is_what_json_means():
    """Ordinary bodies decode to the same values as the standard parser, BOM tolerated."""
    body = {"model": "m", "messages": [{"role": "user", "content": "héllo ✓ 😀"}], "temperature": 0.5, "n": 1}
    raw = json.dumps(body, ensure_ascii=False).encode()
    assert decode_json(raw) == body
    assert decode_json(b"\xef\xbb\xbf" + raw) == body
    assert decode_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    assert decode_json(b'{"seed": -9223372036854775808}') == {"seed": -(2**63)}


def test_decode_as_names_the_field():
    """A typed decode that does not fit says which field."""

    class Body(msgspec.Struct):
        to_version: int

    with pytest.raises(RequestError) as info:
        decode_as(b'{"to_version": "x"}', Body)
    assert info.value.param == "to_version"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(value=json_values)
def test_valid_json_round_trips(value: Any):
    """Any JSON value the standard library writes (shallow, finite) comes back equal."""
    assert decode_json(json.dumps(value).encode()) == value


@FUZZ
@given(body=st.binary(max_size=400) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_give_a_value_or_a_request_error(body: bytes):
    """No byte string makes the decoder raise anything but RequestError."""
    with contextlib.suppress(RequestError):
        decode_json(body)


def _only_request_errors(parse: Any, body: bytes) -> None:
    with contextlib.suppress(RequestError):
        parse(body)


near_chat = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["m", ""]) | json_values,
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "tool", "x"]), "content": json_values}),
            max_size=3,
        )
        | json_values,
    },
    optional={
        "max_tokens": st.integers() | json_values,
        "temperature": st.floats() | json_values,
        "top_p": st.floats(),
        "stop": json_values,
        "seed": st.integers(),
        "stream": json_values,
        "logprobs": json_values,
        "top_logprobs": st.integers(),
        "tools": json_values,
        "prompt": st.text() | st.lists(st.integers()) | json_values,
    },
)
bodies = near_chat.map(lambda v: json.dumps(v, allow_nan=True).encode()) | st.binary(max_size=300)


@FUZZ
@given(body=bodies)
def test_request_parsers_raise_only_request_errors(body: bytes):
    """Chat, worker, classify and admin parsers: any body is parsed or refused with a RequestError."""
    _only_request_errors(parse_chat_request, body)
    _only_request_errors(parse_worker_request, body)
    _only_request_errors(parse_classify_body, body)
    _only_request_errors(lambda b: _document(b, "application/json"), body)
    _only_request_errors(lambda b: _rollback_target(b, None), body)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_request_parsers_refuse_the_hostile_list(name):
    """The hostile list through every request parser: RequestError each time."""
    for parse in (
        parse_chat_request,
        parse_worker_request,
        parse_classify_body,
        lambda b: _document(b, "application/json"),
    ):
        with pytest.raises(RequestError):
            parse(HOSTILE[name])


# -- YAML documents (policies through PUT /admin/policies with application/yaml, and the files) ------

ALIAS_BOMB = "\n".join(
    ["domain: math", "version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    + ["rules: *a9"]
)


@pytest.mark.parametrize(
    "text",
    [
        "domain: math\nrules: " + "[" * 20_000 + "]" * 20_000,
        "domain: math\nrules:\n" + "".join("  " * i + "- \n" for i in range(3_000)),
        "a: " + "{b: " * 10_000 + "1" + "}" * 10_000,
        ALIAS_BOMB,
        "domain: &d math\nversion: *d\n",
        "- *undefined\n",
        "!!python/object:os.system ls\n",
        "domain: math\n" * 2 + "\x00",
        "\ud800: 1",
    ],
    ids=[
        "deep flow",
        "deep block",
        "deep mapping",
        "alias bomb",
        "alias",
        "undefined alias",
        "python tag",
        "nul",
        "surrogate",
    ],
)
def test_hostile_policy_yaml_is_a_definition_error(text: str):
    """Deep nesting, alias bombs and tags in a policy document: a located DefinitionError, quickly."""
    with pytest.raises(DefinitionError):
        parse_policy(
            text.encode("utf-8", "surrogatepass"), source="request body", domains=DOMAINS, expect_domain="math"
        )


yaml_texts = st.text(alphabet=st.sampled_from(list("abc:-[]{}&*!|>'\"#,? \n\t0129.")), max_size=200)


@FUZZ
@given(text=yaml_texts)
def test_random_yaml_gives_a_policy_or_a_definition_error(text: str):
    """Any YAML-ish text is a Policy or a DefinitionError, nothing else."""
    with contextlib.suppress(DefinitionError):
        parse_policy(text, source="fuzz", domains=DOMAINS, expect_domain="math")
