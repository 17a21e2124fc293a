"""Shared helpers for the audit unit tests: a record factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.audit.record import AuditRecord


def build_record(request_id: str = "req-1", **fields: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "ts": "2026-05-01T12:00:00.000Z",
        "request_id": request_id,
        "api_key_id": "key-abcdef012345",
        "domain": "math",
        "domain_confidence": 0.9,
        "policy": "math",
        "policy_version": 2,
        "policy_hash": "sha256:abc",
        "stop_rule": None,
        "finish_reason": "stop",
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "max_tokens": 256,
        "shadow": None,
        "ttft_ms": 40.0,
        "duration_ms": 500.0,
        "client_disconnected": False,
        "error": None,
    }
    values.update(fields)
    return AuditRecord(**values)


@pytest.fixture()
def make_record() -> Callable[..., AuditRecord]:
    """Build an AuditRecord with plausible defaults; keyword arguments override fields."""
    return build_record
