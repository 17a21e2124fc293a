"""Litestar guards: API keys on ``/v1/*`` (the caller's key id lands in ``request.state``)."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler


def api_key_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    keyring = connection.app.state.keyring
    connection.state.api_key_id = keyring.require(connection.headers.get("authorization"))
