"""The policies in force: ``ActivePolicy`` (what a request pins for its whole life) and the immutable
``PolicySnapshot`` of them that the store replaces, never mutates."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import ConfigError
from gateway.policy.schema import DEFAULT_DOMAIN, Policy


@dataclass(frozen=True, slots=True)
class ActivePolicy:
    """The policy in force for a domain: the value a request pins for its whole life."""

    policy: Policy
    version: int
    hash: str
    source: str  # "redis" or "files"

    @property
    def domain(self) -> str:
        return self.policy.domain

    def document(self) -> dict[str, Any]:
        return self.policy.to_document()


class PolicySnapshot:
    """An immutable ``domain -> ActivePolicy`` map; ``get`` falls back to the default policy."""

    __slots__ = ("_by_domain",)

    def __init__(self, by_domain: Mapping[str, ActivePolicy]) -> None:
        self._by_domain = dict(by_domain)

    def get(self, domain: str) -> ActivePolicy:
        found = self._by_domain.get(domain) or self._by_domain.get(DEFAULT_DOMAIN)
        if found is None:
            raise ConfigError(f"no policy for domain {domain!r} and no {DEFAULT_DOMAIN!r} policy")
        return found

    def own(self, domain: str) -> ActivePolicy | None:
        """The domain's own policy, without the default fallback."""
        return self._by_domain.get(domain)

    def items(self) -> Iterator[tuple[str, ActivePolicy]]:
        return iter(sorted(self._by_domain.items()))

    def replaced(self, updates: Mapping[str, ActivePolicy]) -> PolicySnapshot:
        return PolicySnapshot({**self._by_domain, **updates})
