"""Files against the store: which domains' policy files differ from the version that is active.

The store (Redis) is the source of truth while the gateways run; a file is only written to it on the
first start (seed), by ``POST /admin/policies/reload``, by ``stopgate policies push``, or on start with
``STOPGATE_POLICIES_SOURCE=files``. So an edited file is not live until one of those: ``find_drift``
names every such domain with both hashes, for the start-up warning, ``stopgate policies validate``
and ``diff``, and ``GET /admin/policies``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Drift:
    """A domain whose file is not the active version (``active_version`` None: nothing active yet)."""

    domain: str
    file_hash: str
    active_hash: str | None
    active_version: int | None
    active_source: str | None

    def describe(self, policies_source: str = "store") -> str:
        if self.active_version is None:
            return f"{self.domain}: the file (sha256:{self.file_hash[:12]}) has no active version in the store yet"
        advice = (
            "the file is written as a new version on the next start (STOPGATE_POLICIES_SOURCE=files)"
            if policies_source == "files"
            else "the store wins: publish the file with `stopgate policies push` or POST /admin/policies/reload"
        )
        return (
            f"{self.domain}: the file (sha256:{self.file_hash[:12]}) differs from the active v{self.active_version} "
            f"(sha256:{(self.active_hash or '')[:12]}, from {self.active_source}); {advice}"
        )


def find_drift(file_hashes: Mapping[str, str], active: Mapping[str, tuple[int, str, str]]) -> list[Drift]:
    """Domains (in name order) whose file hash is not the active one; ``active``: domain -> (version,
    hash, source). A domain without a file is not drift (it inherits the default policy)."""
    out = []
    for domain in sorted(file_hashes):
        found = active.get(domain)
        if found is None:
            out.append(Drift(domain, file_hashes[domain], None, None, None))
        elif found[1] != file_hashes[domain]:
            out.append(Drift(domain, file_hashes[domain], found[1], found[0], found[2]))
    return out
