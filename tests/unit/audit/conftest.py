"""Shared helpers for the audit unit tests: a record factory."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.audit.record import AuditRecord
from tests.audit_records import build_record


@pytest.fixture()
def make_record() -> Callable[..., AuditRecord]:
    """Build an AuditRecord with plausible defaults; keyword arguments override fields."""
    return build_record
