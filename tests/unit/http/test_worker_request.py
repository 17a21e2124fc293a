"""The worker API's request: the fields the worker reads, and the rest handed on to the local worker."""

from __future__ import annotations

import json

from gateway.http.worker_request import parse_worker_request


def test_request_fields_the_worker_does_not_read_go_to_extra() -> None:
    """tools, penalties and unknown fields are handed on; enable_thinking sets the thinking mode."""
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "frequency_penalty": 0.5,
        "chat_template_kwargs": {"enable_thinking": True},
        "logprobs": True,
        "top_logprobs": 3,
    }
    req, extra = parse_worker_request(json.dumps(body).encode())
    assert set(extra) == {"tools", "frequency_penalty"}
    assert req.thinking == "on" and req.alternatives(chat=True) == 3
