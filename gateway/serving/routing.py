"""Routing: which domain a request belongs to and which policy version governs it.

The classifier answers for the last user message (earlier turns are passed as context); an
operator may force the domain. The policy comes from the store's in-process snapshot: a plain
lookup, no Redis round trip, pinned for the whole request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.errors import UnknownDomain
from gateway.serving.call import ChatCall
from gateway.serving.ports import DomainClassifier, PolicySource

if TYPE_CHECKING:
    from gateway.policy.schema import Policy

from gateway.domains import FALLBACK_DOMAIN


@dataclass(frozen=True)
class Route:
    domain: str
    confidence: float
    policy_name: str
    policy_version: int
    policy_hash: str
    policy: Policy | None = None  # None when no policy applies


class Router:
    def __init__(self, classifier: DomainClassifier | None = None, policies: PolicySource | None = None) -> None:
        self.classifier = classifier
        self.policies = policies

    @property
    def domain_names(self) -> frozenset[str]:
        if self.classifier is None:
            return frozenset({FALLBACK_DOMAIN})
        return frozenset(self.classifier.domains.names)

    async def route(self, call: ChatCall) -> Route:
        if call.admin and call.force_domain is not None:
            if call.force_domain not in self.domain_names:
                raise UnknownDomain(f"Unknown domain {call.force_domain!r}.", param="x-stopgate-domain")
            domain, confidence = call.force_domain, 1.0
        else:
            domain, confidence = await self._classify(call)
        if self.policies is None:
            return Route(domain, confidence, "none", 0, "", None)
        active = self.policies.get(domain)
        return Route(domain, confidence, active.policy.domain, active.version, active.hash, active.policy)

    async def _classify(self, call: ChatCall) -> tuple[str, float]:
        if self.classifier is None:
            return FALLBACK_DOMAIN, 1.0
        # The last user message decides; earlier user turns only help a low-confidence follow-up.
        result = await self.classifier.aclassify(call.messages)
        return result.domain, float(result.confidence)
