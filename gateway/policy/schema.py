"""The stopping-policy document as typed, immutable values.

A ``Policy`` is what ``gateway.policy.loader`` builds from YAML or JSON after checking every
field; it is frozen, so a snapshot handed to a request can never change under it. Its document
form (``to_document``) is what the admin API shows and what the store keeps in Redis; the content
hash covers everything but ``version``, which the store assigns.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec

from gateway.policy.quality import AutopilotSpec, QualitySpec
from gateway.policy.rules import RuleSpec
from gateway.policy.thinking_spec import ThinkingSpec

DEFAULT_DOMAIN = "default"
"""The policy a domain without one of its own falls back to."""

MAX_TOKENS_CEILING = 1_000_000
"""Sanity bound on a policy's budget: larger numbers are typos, not budgets."""


class AuditSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the audit record of a request under this policy may contain."""

    include_text: bool = False


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One domain's stopping policy: a token budget plus an ordered list of stopping rules."""

    domain: str
    version: int = 1
    description: str = ""
    max_tokens: int
    min_tokens: int = 0
    rules: tuple[RuleSpec, ...] = ()
    shadow: bool = False
    sample_full_rate: float = 0.0
    audit: AuditSpec = AuditSpec()
    thinking: ThinkingSpec | None = None
    quality: QualitySpec | None = None
    autopilot: AutopilotSpec | None = None

    def to_document(self) -> dict[str, Any]:
        """The plain document (YAML/JSON shape): ``rules`` as one-key ``{kind: params}`` mappings."""
        doc: dict[str, Any] = {
            "domain": self.domain,
            "version": self.version,
            "description": self.description,
            "max_tokens": self.max_tokens,
            "min_tokens": self.min_tokens,
            "rules": [{rule.kind: msgspec.to_builtins(rule)} for rule in self.rules],
            "shadow": self.shadow,
            "sample_full_rate": self.sample_full_rate,
            "audit": msgspec.to_builtins(self.audit),
        }
        # Optional sections appear only when set, so documents (and hashes) without them are unchanged.
        if self.thinking is not None:
            thinking = msgspec.to_builtins(self.thinking)
            thinking["rules"] = [{rule.kind: msgspec.to_builtins(rule)} for rule in self.thinking.rules]
            doc["thinking"] = thinking
        for name in ("quality", "autopilot"):
            section = getattr(self, name)
            if section is not None:
                doc[name] = msgspec.to_builtins(section)
        return doc

    def content_hash(self) -> str:
        """sha256 of the canonical document without ``version``: equal content, equal hash."""
        return document_hash(self.to_document())

    def with_version(self, version: int) -> Policy:
        return msgspec.structs.replace(self, version=version)


def canonical_json(document: dict[str, Any]) -> str:
    """Key-sorted, whitespace-free JSON: the form that is hashed and stored."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def document_hash(document: dict[str, Any]) -> str:
    body = {k: v for k, v in document.items() if k != "version"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in msgspec.structs.fields(Policy))
