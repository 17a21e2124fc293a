"""Audit records for tests: every DESIGN.md field with plausible values; keywords override."""

from __future__ import annotations

from typing import Any

from gateway.audit.record import AuditRecord

COMPACT: dict[str, Any] = {
    "api_key_id": None,
    "domain_confidence": 0.8,
    "policy_version": 1,
    "policy_hash": "h",
    "prompt_tokens": 5,
    "completion_tokens": 9,
    "max_tokens": 64,
    "ttft_ms": 12.0,
    "duration_ms": 80.0,
}
"""Small round values, for tests that read records back through the CLI or the admin API."""


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
        "reasoning_tokens": 0,
        "thinking_stop_rule": None,
    }
    values.update(fields)
    return AuditRecord(**values)
