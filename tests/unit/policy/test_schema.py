"""The Policy document: immutable values, a round-trippable document form, a stable content hash."""

from __future__ import annotations

import json

import pytest

from gateway.policy.loader import parse_policy
from gateway.policy.schema import AuditSpec, Policy, canonical_json, document_hash

DOMAINS = ("factual", "math")

FACTUAL = """\
domain: factual
version: 3
description: short answers
max_tokens: 256
min_tokens: 8
rules:
  - repetition: {ngram: 6, max_repeats: 2}
shadow: true
sample_full_rate: 0.25
audit: {include_text: true}
"""


def factual() -> Policy:
    return parse_policy(FACTUAL, source="factual.yaml", domains=DOMAINS)


def test_document_has_exactly_the_documented_top_level_keys() -> None:
    """to_document() yields the documented shape, rules as one-key {kind: params} mappings."""
    doc = factual().to_document()
    assert list(doc) == [
        "domain",
        "version",
        "description",
        "max_tokens",
        "min_tokens",
        "rules",
        "shadow",
        "sample_full_rate",
        "audit",
    ]
    (rule,) = doc["rules"]
    assert list(rule) == ["repetition"]
    assert (rule["repetition"]["ngram"], rule["repetition"]["max_repeats"]) == (6, 2)
    assert doc["audit"] == {"include_text": True}
    json.dumps(doc)  # plain JSON types only


def test_document_round_trips() -> None:
    """parse(to_document(p)) == p, both as a JSON object and as its JSON text."""
    policy = factual()
    assert parse_policy(policy.to_document(), source="x", domains=DOMAINS) == policy
    assert parse_policy(json.dumps(policy.to_document()), source="x", domains=DOMAINS) == policy


def test_defaults_fill_optional_fields() -> None:
    """Only domain and max_tokens are required; the rest take their documented defaults."""
    policy = parse_policy("domain: math\nmax_tokens: 64\n", source="math.yaml", domains=DOMAINS)
    assert policy == Policy(domain="math", max_tokens=64)
    assert (policy.version, policy.min_tokens, policy.rules, policy.shadow) == (1, 0, (), False)
    assert (policy.sample_full_rate, policy.audit) == (0.0, AuditSpec(include_text=False))


def test_policy_is_immutable() -> None:
    """A policy cannot be changed in place, so a pinned snapshot never shifts under a request."""
    policy = factual()
    with pytest.raises(AttributeError):
        policy.max_tokens = 1  # type: ignore[misc]


def test_hash_ignores_version_but_not_content() -> None:
    """The content hash is the same across versions and differs when any other field changes."""
    policy = factual()
    assert policy.with_version(99).content_hash() == policy.content_hash()
    doc = policy.to_document()
    doc["max_tokens"] = 255
    assert parse_policy(doc, source="x", domains=DOMAINS).content_hash() != policy.content_hash()


def test_hash_does_not_depend_on_key_order_or_spelled_out_defaults() -> None:
    """Equal policies hash equal however their YAML was written."""
    terse = parse_policy("max_tokens: 64\ndomain: math\nrules: [repetition: ]\n", source="a", domains=DOMAINS)
    doc = terse.to_document()
    reordered = {k: doc[k] for k in reversed(list(doc))}
    assert parse_policy(reordered, source="b", domains=DOMAINS).content_hash() == terse.content_hash()
    assert terse.content_hash() == document_hash(doc)
    assert len(terse.content_hash()) == 64


def test_canonical_json_is_sorted_and_compact() -> None:
    """The hashed form is key-sorted JSON without whitespace."""
    assert canonical_json({"b": 1, "a": [1, 2], "c": {"z": 0, "y": 0.5}}) == '{"a":[1,2],"b":1,"c":{"y":0.5,"z":0}}'
