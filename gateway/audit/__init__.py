"""The audit trail: one typed record per request, delivered off the hot path to a JSON lines file and
a Redis Stream, readable back through filters and per-domain summaries.

``record`` (the record and the draft the pipeline fills in), ``log`` (``AuditLog``: queue, writer,
outage spill), ``sinks`` (file, stream, spill), ``query`` (filters, summary), ``logging`` (structlog
setup for the whole app).
"""

from gateway.audit.log import AuditLog
from gateway.audit.query import AuditFilter, DomainSummary, QueryResult, summary
from gateway.audit.record import AuditDraft, AuditError, AuditRecord, Overrides, ShadowDecision

__all__ = [
    "AuditDraft",
    "AuditError",
    "AuditFilter",
    "AuditLog",
    "AuditRecord",
    "DomainSummary",
    "Overrides",
    "QueryResult",
    "ShadowDecision",
    "summary",
]
