"""Server-sent events framing: ``data: <json>\\n\\n`` frames, keep-alive comments, ``[DONE]``."""

from __future__ import annotations

from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def frame(payload: Any) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"
