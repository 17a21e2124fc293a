"""The audit trail: one typed record per request, delivered off the hot path to a JSON lines file and
a Redis Stream, readable back through filters and per-domain summaries.

``record`` (the record and the draft the pipeline fills in), ``log`` (``AuditLog``: queue and writer
task), ``delivery`` (what the writer does with a batch: file, stream, Redis health, replay),
``chain`` (the per-writer hash chain and its check), ``sinks`` (the JSON lines file), ``stream``
(the Redis Stream: writes and reads), ``spill`` (the on-disk spill and its replay), ``filters``
and ``query`` (reading back, summaries), ``verify`` (``stopgate audit verify``). The app's log
setup is ``gateway.logs``.
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
