"""Fuzzing the running gateway: no input, valid or not, ever gets a 5xx.

Two sources of inputs, both bounded (``max_examples`` per operation, no deadline):
- schemathesis generates positive and negative requests for every operation in ``/schema``;
- hypothesis throws random JSON, near-valid chat bodies and raw bytes at the JSON endpoints.

Requests that would generate get a budget of at most 3 tokens, so the whole module stays near a
minute on 2 cores. Admin writes are not fuzzed here: a random valid policy would change the
session gateway under the other tests (the policy loader has its own property tests).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from gateway.http.protocol import ChatCompletionRequest
from tests.integration.conftest import ADMIN_KEY, MODEL, RunningGateway

pytestmark = pytest.mark.model

# No shrinking: a hung request would be retried at the full timeout many times over; the failing
# example (schemathesis prints it as curl) is reproduction enough.
FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
TIMEOUT_S = 20  # a 3-token answer takes well under a second; longer means a hang
MAX_FUZZ_TOKENS = 3
CHAT = "/v1/chat/completions"
CLASSIFY = "/v1/classify"


# -- schemathesis ----------------------------------------------------------------------------------


def document_bodies(raw: dict[str, Any]) -> None:
    """Describe the JSON bodies the served schema leaves out, so schemathesis fuzzes them too.

    The chat body is the wire type plus the documented ranges (what the edge enforces), so that
    positive examples get past validation and into the pipeline.
    """
    (chat_ref,), components = msgspec.json.schema_components(
        [ChatCompletionRequest], ref_template="#/components/schemas/{name}"
    )
    props = components["ChatCompletionRequest"]["properties"]
    props["model"] = {"type": "string", "enum": [MODEL]}
    props["messages"].update(minItems=1, contains={"properties": {"role": {"const": "user"}}})
    props["temperature"]["anyOf"][0].update(minimum=0, maximum=2)
    props["top_p"]["anyOf"][0].update(exclusiveMinimum=0, maximum=1)
    props["n"] = {"type": "integer", "const": 1}
    props["stop"]["anyOf"][1].update(maxItems=4, items={"type": "string", "minLength": 1})
    raw.setdefault("components", {}).setdefault("schemas", {}).update(components)
    classify = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    for path, schema in ((CHAT, chat_ref), (CLASSIFY, classify)):
        op = raw["paths"].get(path, {}).get("post")
        if op is not None and "requestBody" not in op:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}


def tame_tokens(body: Any) -> None:
    """Cap the budget of a body that would generate at a few tokens: we fuzz inputs, not the model."""
    if not isinstance(body, dict):
        return
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_FUZZ_TOKENS:
            body[name] = MAX_FUZZ_TOKENS
    if body.get("max_completion_tokens") is None and body.get("max_tokens") is None:
        body["max_tokens"] = MAX_FUZZ_TOKENS


def assert_openai_error(response: httpx.Response | Any, label: str) -> None:
    """A 4xx carries an OpenAI error object with a message."""
    if 400 <= response.status_code < 500:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            pytest.fail(f"{label}: {response.status_code} without an OpenAI error object: {response.text[:200]}")
        assert message, label


@pytest.fixture(scope="module")
def api_schema(gateway: RunningGateway) -> Any:
    raw = httpx.get(gateway.url + "/schema/openapi.json", timeout=30).raise_for_status().json()
    document_bodies(raw)
    return schemathesis.openapi.from_dict(raw)


def fuzzed_operations(schema: Any) -> list[Any]:
    ops = [result.ok() for result in schema.get_all_operations()]
    return [op for op in ops if not (op.path.startswith("/admin") and op.method.upper() != "GET")]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_schemathesis_finds_no_server_error(gateway: RunningGateway, api_schema: Any, mode: GenerationMode) -> None:
    """Every operation in /schema, fed generated requests, answers below 500 (4xx in the OpenAI shape)."""
    ops = fuzzed_operations(api_schema)
    assert any(op.path == CHAT for op in ops)
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    for op in ops:
        if mode is GenerationMode.NEGATIVE and not (op.body or op.query or op.path_parameters or op.headers):
            continue  # nothing to get wrong

        @FUZZ
        @given(case=op.as_strategy(mode))
        def fuzz(case: Any) -> None:
            tame_tokens(case.body)
            headers = admin if case.path.startswith("/admin") else None
            response = case.call_and_validate(
                base_url=gateway.url, headers=headers, checks=[not_a_server_error], timeout=TIMEOUT_S
            )
            assert_openai_error(response, f"{case.method} {case.path}")

        try:
            fuzz()
        except Unsatisfiable:
            # schemathesis cannot express an invalid request for this operation
            assert mode is GenerationMode.NEGATIVE, op.label


# -- hypothesis on raw bodies ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
small_or_invalid = st.integers(1, MAX_FUZZ_TOKENS) | st.sampled_from([0, -1, 1.5, "2", True, [], {}])
message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "system", "assistant", "developer", "tool", "robot", ""]) | json_values,
        "content": st.text(max_size=80)
        | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": st.text()}))
        | json_values,
    },
    optional={"name": st.text(max_size=10) | json_values},
)
chat_bodies = st.fixed_dictionaries(
    {
        "model": st.just(MODEL) | st.text(max_size=20) | json_values,
        "messages": st.lists(message, max_size=3) | json_values,
        "max_tokens": small_or_invalid,
    },
    optional={
        "max_completion_tokens": small_or_invalid | st.none(),
        "stream": st.booleans() | json_values,
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_values,
        "temperature": st.floats(-1, 3) | json_values,
        "top_p": st.floats(-1, 2) | json_values,
        "seed": st.integers() | json_values,
        "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=6) | json_values,
        "n": st.integers(-2, 3) | json_values,
        "user": json_values,
        "logprobs": json_values,
        "tools": json_values,
    },
)
header_text = st.text(
    st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30
)  # what a client can send
chat_headers = st.fixed_dictionaries(
    {},
    optional={
        "x-stopgate-domain": st.sampled_from(["math", "code", "general"]) | header_text,
        "x-stopgate-policy": st.sampled_from(["off", "OFF"]) | header_text,
        "x-stopgate-admin-key": st.just(ADMIN_KEY) | header_text,
        "content-type": st.sampled_from(["application/json", "text/plain", "application/yaml"]) | header_text,
    },
)


EXTREME = {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
"""A valid request, the base of the explicit examples of edge values below."""


def post(gw: RunningGateway, path: str, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    response = httpx.post(gw.url + path, content=content, headers=headers, timeout=TIMEOUT_S)
    assert response.status_code < 500, f"{path}: {response.status_code} for {content[:300]!r}: {response.text[:300]}"
    assert_openai_error(response, path)
    # A failure after the first byte of a stream is a frame, not a status.
    assert '"internal_error"' not in response.text, f"{path}: internal error for {content[:300]!r}"
    return response


def test_random_chat_bodies_never_give_a_server_error(gateway: RunningGateway) -> None:
    """Arbitrary JSON and near-valid chat requests (with any override headers) never give a 5xx."""

    @settings(FUZZ, max_examples=60)
    @given(body=json_values | chat_bodies, headers=chat_headers)
    @example(body={**EXTREME, "top_p": 5e-324}, headers={})  # every token filtered out: NaN probabilities
    @example(body={**EXTREME, "temperature": 5e-324}, headers={})
    @example(body={**EXTREME, "seed": 2**64}, headers={})  # beyond what torch's generator takes
    @example(body={**EXTREME, "seed": -(2**63) - 1}, headers={})
    def fuzz(body: Any, headers: dict[str, str]) -> None:
        post(gateway, CHAT, json.dumps(body).encode(), headers)

    fuzz()


def test_random_bytes_never_give_a_server_error(gateway: RunningGateway) -> None:
    """Bodies that are not JSON (or not UTF-8) are 4xx on every JSON endpoint."""

    @FUZZ
    @given(body=st.binary(max_size=200), path=st.sampled_from([CHAT, CLASSIFY]))
    def fuzz(body: bytes, path: str) -> None:
        post(gateway, path, body, {"content-type": "application/json"})

    fuzz()


def test_random_classify_bodies_never_give_a_server_error(gateway: RunningGateway) -> None:
    """Arbitrary JSON and {"text": ...} bodies of any type never give /v1/classify a 5xx."""

    @settings(FUZZ, max_examples=40)
    @given(body=json_values | st.fixed_dictionaries({"text": st.text(max_size=300) | json_values}))
    def fuzz(body: Any) -> None:
        post(gateway, CLASSIFY, json.dumps(body).encode())

    fuzz()
