"""The audit record: one per request, whatever way the request ended.

``AuditRecord`` holds exactly the fields of DESIGN.md (always present in the JSON, ``null`` when not
known) plus a few optional ones that are left out of the JSON when unset. ``AuditDraft`` is the
mutable side the request pipeline fills in as it goes and turns into a record in its ``finally``
path, so an error or a client disconnect still yields an honest record.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from gateway.errors import StopgateError

MAX_ERROR_MESSAGE = 500
"""Error messages are cut to this many characters: enough to diagnose, never a dump."""

DEFAULT_TEXT_CAP = 4096
"""Prompt/completion text (only with ``audit.include_text``) is cut to this many characters."""


def utc_now_iso() -> str:
    """The current time as an ISO 8601 UTC string with milliseconds, e.g. ``2026-05-09T16:31:58.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cap_text(text: str, limit: int = DEFAULT_TEXT_CAP) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"…[{len(text) - limit} more chars]"


class ShadowDecision(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a shadow-mode policy would have done: the rule that would have stopped, and at which token."""

    rule: str
    at_token: int


class AuditError(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Why a request failed: the exception's class name and message. Never a traceback or locals."""

    type: str
    message: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> AuditError:
        # Our own errors carry messages we wrote; anything else might quote user input (a tokenizer
        # error, say), so only its class goes into the record and the details stay in the log.
        if isinstance(exc, StopgateError):
            message = exc.message
        elif isinstance(exc, asyncio.CancelledError):
            message = "cancelled"
        else:
            message = "internal error; see the gateway log for this request_id"
        return cls(type=type(exc).__name__, message=cap_text(message, MAX_ERROR_MESSAGE))


class Overrides(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Operator overrides a request asked for (``x-stopgate-domain``/``x-stopgate-policy``) and whether
    they were honoured (only with the right ``x-stopgate-admin-key``)."""

    domain: str | None = None
    policy: str | None = None
    honoured: bool


class AuditRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """One request, as decided and as it ended. Fields without a default are DESIGN.md's and are always
    written (``null`` when unknown); the optional ones below them are omitted from the JSON when unset."""

    ts: str  # when the request arrived, ISO 8601 UTC
    request_id: str
    api_key_id: str | None  # a hash prefix of the API key, never the key
    domain: str | None
    domain_confidence: float | None
    policy: str | None
    policy_version: int | None
    policy_hash: str | None
    stop_rule: str | None  # the rule that ended generation; null when the model or the budget did
    finish_reason: str | None  # OpenAI's "stop" | "length"; null when no finish was sent
    prompt_tokens: int
    completion_tokens: int
    max_tokens: int | None
    shadow: ShadowDecision | None
    ttft_ms: float | None
    duration_ms: float
    client_disconnected: bool
    error: AuditError | None
    # Reasoning models: thinking tokens (within completion_tokens) and the rule that ended thinking early
    # ("max_tokens" for the thinking budget); 0 / null for a request without a thinking phase.
    reasoning_tokens: int
    thinking_stop_rule: str | None
    # Online quality sampling: the length of the full (unstopped) generation and whether its answer
    # agreed with the one sent.
    full_completion_tokens: int | None = None
    answer_agreed: bool | None = None
    # Only when the policy's audit.include_text is on; capped with cap_text.
    prompt_text: str | None = None
    completion_text: str | None = None
    overrides: Overrides | None = None
    # The hash chain (gateway.audit.chain): set by the writer on the delivered line, never by the pipeline.
    writer: str | None = None
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None


@dataclass(slots=True)
class AuditDraft:
    """The record being built while a request runs; ``finish()`` turns it into an ``AuditRecord``.

    Create it as soon as the request has an id, fill in what becomes known, call ``first_token()``
    when the first token is sent, and ``finish()`` from the ``finally`` path.
    """

    request_id: str
    api_key_id: str | None = None
    max_tokens: int | None = None
    domain: str | None = None
    domain_confidence: float | None = None
    policy: str | None = None
    policy_version: int | None = None
    policy_hash: str | None = None
    stop_rule: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    shadow: ShadowDecision | None = None
    reasoning_tokens: int = 0
    thinking_stop_rule: str | None = None
    client_disconnected: bool = False
    error: AuditError | None = None
    full_completion_tokens: int | None = None
    answer_agreed: bool | None = None
    prompt_text: str | None = None
    completion_text: str | None = None
    overrides: Overrides | None = None
    ts: str = field(default_factory=utc_now_iso)
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None

    def first_token(self) -> None:
        """Mark the time to first token (only the first call counts)."""
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def fail(self, exc: BaseException) -> None:
        self.error = AuditError.from_exception(exc)

    def include_text(self, prompt: str, completion: str, limit: int = DEFAULT_TEXT_CAP) -> None:
        """Record the texts; call only when the policy's ``audit.include_text`` is on."""
        self.prompt_text = cap_text(prompt, limit)
        self.completion_text = cap_text(completion, limit)

    def finish(self) -> AuditRecord:
        now = time.perf_counter()
        ttft = None if self.first_token_at is None else round((self.first_token_at - self.started) * 1000, 3)
        return AuditRecord(
            ts=self.ts,
            request_id=self.request_id,
            api_key_id=self.api_key_id,
            domain=self.domain,
            domain_confidence=self.domain_confidence,
            policy=self.policy,
            policy_version=self.policy_version,
            policy_hash=self.policy_hash,
            stop_rule=self.stop_rule,
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            max_tokens=self.max_tokens,
            shadow=self.shadow,
            ttft_ms=ttft,
            duration_ms=round((now - self.started) * 1000, 3),
            client_disconnected=self.client_disconnected,
            error=self.error,
            reasoning_tokens=self.reasoning_tokens,
            thinking_stop_rule=self.thinking_stop_rule,
            full_completion_tokens=self.full_completion_tokens,
            answer_agreed=self.answer_agreed,
            prompt_text=self.prompt_text,
            completion_text=self.completion_text,
            overrides=self.overrides,
        )


def _enc_hook(obj: object) -> object:
    # A numpy scalar (a classifier's confidence, say) slipped into a field: store its Python value.
    item = getattr(obj, "item", None)
    if callable(item):
        return item()
    raise NotImplementedError(f"cannot encode {type(obj).__name__} in an audit record")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_decoder = msgspec.json.Decoder(AuditRecord)


def encode_record(record: AuditRecord) -> bytes:
    """The record as one line of JSON (no trailing newline)."""
    return _encoder.encode(record)


def decode_record(data: bytes | str) -> AuditRecord:
    """Parse one JSON record strictly; raises ``msgspec.ValidationError``/``DecodeError``."""
    return _decoder.decode(data)
