"""``/admin/policies``: read, replace, roll back and reload stopping policies, behind the admin key.

Bodies are read raw so that a malformed one becomes a clean OpenAI-shaped error: invalid JSON is
a 400, a document that fails validation is a 422 naming every bad field (``DefinitionError``), and
in both cases the active version stays. YAML is accepted with ``Content-Type: application/yaml``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.params import Parameter

from gateway.errors import NotReady, RequestError
from gateway.http.decoding import decode_as, decode_json
from gateway.http.guards import admin_guard
from gateway.policy.records import PolicyVersion
from gateway.policy.snapshot import ActivePolicy
from gateway.policy.store import PolicyStore
from gateway.services import Services

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    to_version: int


def _admin_store(request: Request[Any, Any, Any], services: Services) -> PolicyStore:
    if services.policies is None:
        raise NotReady("the policy store is not running")
    store: PolicyStore = services.policies
    return store


def _domain(store: PolicyStore, domain: str) -> str:
    store.check_domain(domain)
    return domain


def policy_view(domain: str, active: ActivePolicy, store: PolicyStore | None = None) -> dict[str, Any]:
    """The wire shape of one domain's active policy (``inherited_from``: set when it is the default).

    With the store: ``file_hash`` (the domain's policy file as last read, None without one) and
    ``file_differs`` (the file is not the active version: the store wins until a push or reload)."""
    view = {
        "domain": domain,
        "version": active.version,
        "hash": active.hash,
        "policy": active.document(),
        "inherited_from": active.domain if active.domain != domain else None,
    }
    if store is not None:
        file_hash = store.file_hash(domain)
        view["file_hash"] = file_hash
        view["file_differs"] = file_hash is not None and file_hash != active.hash
    return view


def version_view(entry: PolicyVersion, active_version: int | None) -> dict[str, Any]:
    return {
        "version": entry.version,
        "hash": entry.hash,
        "ts": dt.datetime.fromtimestamp(entry.ts, dt.UTC).isoformat(),
        "source": entry.source,
        "evidence": entry.evidence,  # autopilot's figures behind an automatic change (None otherwise)
        "active": entry.version == active_version,
        "policy": entry.full_document(),
    }


def _document(body: bytes, content_type: str) -> bytes | dict[str, Any]:
    """YAML text as bytes (the loader locates its lines), or the decoded JSON value."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in YAML_TYPES:
        return body
    if not body.strip():
        raise RequestError(
            "empty body: send the policy document as a JSON object, or as YAML with 'Content-Type: application/yaml'"
        )
    try:
        value = decode_json(body)
    except RequestError as exc:
        raise RequestError(f"{exc.message} For YAML send 'Content-Type: application/yaml'.") from None
    if not isinstance(value, dict):
        raise RequestError(f"the policy document must be a JSON object, got {type(value).__name__}")
    return value


def _rollback_target(body: bytes, to: int | None) -> int:
    if body.strip():
        try:
            target = decode_as(body, RollbackRequest).to_version
        except RequestError as exc:
            raise RequestError(
                f'rollback body must be {{"to_version": N}}: {exc.message}', param="to_version"
            ) from None
        if to is not None and to != target:
            raise RequestError("?to= and to_version disagree", param="to_version")
        return target
    if to is None:
        raise RequestError('say which version: {"to_version": N} or ?to=N', param="to_version")
    return to


class AdminPoliciesController(Controller):
    path = "/admin/policies"
    tags = ("admin",)
    guards = [admin_guard]  # noqa: RUF012 - Litestar's declaration style

    @get("/", summary="Every domain's active policy and the store's state")
    async def list_policies(self, request: Request[Any, Any, Any], services: Services) -> dict[str, Any]:
        store = _admin_store(request, services)
        return {
            "store": store.status(),
            "files_differ": [d.domain for d in store.drift()],  # edited files that are not live
            "data": [policy_view(d, a, store) for d, a in store.snapshot.items()],
        }

    @get("/{domain:str}", summary="The active policy of a domain (the default one if it has none)")
    async def get_policy(self, request: Request[Any, Any, Any], services: Services, domain: str) -> dict[str, Any]:
        store = _admin_store(request, services)
        return policy_view(domain, store.get(_domain(store, domain)), store)

    @put("/{domain:str}", summary="Replace a domain's policy: a new version on every replica")
    async def put_policy(self, request: Request[Any, Any, Any], services: Services, domain: str) -> dict[str, Any]:
        store = _admin_store(request, services)
        _domain(store, domain)
        document = _document(await request.body(), request.headers.get("content-type", ""))
        return policy_view(domain, await store.put(domain, document, source="admin"))

    @get("/{domain:str}/history", summary="A domain's versions, newest first")
    async def history(self, request: Request[Any, Any, Any], services: Services, domain: str) -> dict[str, Any]:
        store = _admin_store(request, services)
        entries = await store.history(_domain(store, domain))
        own = store.snapshot.own(domain)
        active = own.version if own is not None else None
        return {"domain": domain, "data": [version_view(e, active) for e in entries]}

    @post("/{domain:str}/rollback", status_code=200, summary="Make an old version active again (as a new one)")
    async def rollback(
        self,
        request: Request[Any, Any, Any],
        services: Services,
        domain: str,
        to: Annotated[int | None, Parameter(description="the version to go back to")] = None,
    ) -> dict[str, Any]:
        store = _admin_store(request, services)
        _domain(store, domain)
        target = _rollback_target(await request.body(), to)
        return policy_view(domain, await store.rollback(domain, target))

    @post("/reload", status_code=200, summary="Re-read the policy files and publish the changed ones")
    async def reload(self, request: Request[Any, Any, Any], services: Services) -> dict[str, Any]:
        store = _admin_store(request, services)
        changed = await store.reload_from_files()
        return {
            "changed": [policy_view(d, a) for d, a in changed.items()],
            "unchanged": sorted(d for d, _ in store.snapshot.items() if d not in changed),
        }
