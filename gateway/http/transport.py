"""Below the app: what the HTTP server answers to requests that never reach a handler.

``JsonErrorH11Protocol``: uvicorn answers a malformed request (oversized headers, a broken request
line, bad framing) with a plain-text 400; ours sends the same 400 as an OpenAI error object, so every
client error has one shape. ``BodyDeadline``: a request body that has not fully arrived within
``seconds`` of the request's start (a slow-body attack holding a connection and a handler) is ended
with a 408 error object instead of waiting for ever; headers over ``MAX_HEADER_BYTES`` are a 431.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvicorn
from litestar.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

BODY_DEADLINE_S = 30.0
"""A request body must be complete this long after the request began."""

MAX_HEADER_BYTES = 32 * 1024
"""Request line plus headers beyond this are refused (400) by the server, before the app."""

_MALFORMED = json.dumps(
    {
        "error": {
            "message": "Invalid HTTP request: malformed, or its headers are too large.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_http_request",
        }
    }
).encode()


class JsonErrorH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with its 400 for unparsable requests written as an OpenAI error object."""

    def send_400_response(self, msg: str) -> None:
        import h11

        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_MALFORMED)).encode()),  # not chunked: one plain body
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=_MALFORMED),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def server_config(
    app: Any, host: str, port: int, *, grace_s: float, body_deadline_s: float = BODY_DEADLINE_S
) -> uvicorn.Config:
    """uvicorn's config for a Stopgate process: the hardening above, our logging, no access lines."""
    return uvicorn.Config(
        BodyDeadline(app, body_deadline_s),
        host=host,
        port=port,
        http=JsonErrorH11Protocol,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(grace_s),
    )


class BodyDeadline:
    """ASGI wrapper: ``receive`` fails with a 408 once the body is overdue; afterwards it passes through
    (a streaming response waits on ``receive`` for the client's disconnect, for as long as it streams)."""

    def __init__(self, app: Any, seconds: float = BODY_DEADLINE_S) -> None:
        self.app = app
        self.seconds = seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)  # the wrapped app's state, routes, ... stay reachable

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        # h11 caps headers only while they arrive in pieces; a block sent at once is checked here.
        size = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))
        if size > MAX_HEADER_BYTES:
            await _refuse(send, 431, f"Request headers too large ({size} bytes; at most {MAX_HEADER_BYTES}).")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False

        async def timed_receive() -> Any:
            nonlocal complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.001, deadline - loop.time()))
            except TimeoutError:
                raise HTTPException(
                    status_code=408, detail=f"The request body did not arrive within {self.seconds:g} s."
                ) from None
            if message.get("type") != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed_receive, send)


async def _refuse(send: Any, status: int, message: str) -> None:
    """Answer before the app sees the request, with an OpenAI error object."""
    body = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "request_too_large"}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
