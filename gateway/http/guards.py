"""Litestar guards: API keys on ``/v1/*`` (the caller's key id lands in ``request.state``) and the
admin key on ``/admin/*``. Both key rings are built once by ``create_app`` and kept in ``app.state``.

The guards are coroutines although they never wait: Litestar runs a plain-function guard in a
worker thread, a thread hop on every request for a dictionary look-up."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.http.auth import AdminGate


async def api_key_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    keyring = connection.app.state.keyring
    connection.state.api_key_id = keyring.require(connection.headers.get("authorization"))


def admin_gate(connection: ASGIConnection[Any, Any, Any, Any]) -> AdminGate:
    gate: AdminGate = connection.app.state.admin_gate
    return gate


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """``Authorization: Bearer $STOPGATE_ADMIN_KEY`` or 401 (every admin call refused with no key set)."""
    admin_gate(connection).require(connection.headers.get("authorization"))
