"""Key checks for the HTTP edge: API keys on ``/v1/*`` and the admin key on ``/admin/*``.

Keys are kept only as SHA-256 digests and compared in constant time; a key's id (hash prefix)
is what reaches logs and audit records.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from gateway.errors import AdminAuthError, AuthError


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_id(key: str) -> str:
    """The public id of a key: a short hash prefix, safe to log."""
    return "key-" + key_digest(key).hex()[:12]


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class KeyRing:
    """A set of accepted keys; empty means open."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [key_digest(k) for k in keys if k]

    @property
    def open(self) -> bool:
        return not self._digests

    def matches(self, key: str | None) -> bool:
        if key is None:
            return False
        digest = key_digest(key)
        found = False
        for known in self._digests:  # no early exit: time does not depend on which key matched
            found |= hmac.compare_digest(digest, known)
        return found

    def require(self, authorization: str | None) -> str | None:
        """The caller's key id, or raise ``AuthError``; ``None`` when the ring is open."""
        if self.open:
            return None
        key = bearer(authorization)
        if not self.matches(key):
            raise AuthError("Missing or invalid API key: send 'Authorization: Bearer <key>'.")
        assert key is not None
        return key_id(key)


class AdminGate:
    """The admin key check; with no admin key configured every admin call is refused."""

    def __init__(self, admin_key: str) -> None:
        self._ring = KeyRing([admin_key]) if admin_key else None

    def allows(self, key: str | None) -> bool:
        return self._ring is not None and self._ring.matches(key)

    def require(self, authorization: str | None) -> None:
        if not self.allows(bearer(authorization)):
            raise AdminAuthError("Admin endpoints need 'Authorization: Bearer $STOPGATE_ADMIN_KEY'.")
