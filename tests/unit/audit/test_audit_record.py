"""The audit record: its JSON shape, strictness, and the draft the pipeline fills in."""

from __future__ import annotations

import json
import re
import time

import msgspec
import pytest

from gateway.audit.record import (
    MAX_ERROR_MESSAGE,
    AuditDraft,
    AuditError,
    Overrides,
    ShadowDecision,
    cap_text,
    decode_record,
    encode_record,
    utc_now_iso,
)
from gateway.errors import WorkerError

DESIGN_FIELDS = {
    "ts",
    "request_id",
    "api_key_id",
    "domain",
    "domain_confidence",
    "policy",
    "policy_version",
    "policy_hash",
    "stop_rule",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "max_tokens",
    "shadow",
    "ttft_ms",
    "duration_ms",
    "client_disconnected",
    "error",
}
THINKING_FIELDS = {"reasoning_tokens", "thinking_stop_rule"}  # always written too (0 / null without thinking)


def test_json_has_exactly_the_design_fields_when_optional_ones_are_unset(make_record):
    """Every DESIGN.md field is written (null when unknown); unset optional fields are left out."""
    data = json.loads(encode_record(make_record(domain=None, policy=None)))
    assert set(data) == DESIGN_FIELDS | THINKING_FIELDS
    assert data["domain"] is None and data["error"] is None and data["shadow"] is None


def test_optional_fields_appear_when_set(make_record):
    """Sampling, text and override fields are written once they have values."""
    rec = make_record(
        full_completion_tokens=90,
        answer_agreed=True,
        prompt_text="p",
        completion_text="c",
        overrides=Overrides(domain="code", honoured=False),
    )
    data = json.loads(encode_record(rec))
    assert data["full_completion_tokens"] == 90 and data["answer_agreed"] is True
    assert data["overrides"] == {"domain": "code", "policy": None, "honoured": False}


def test_round_trip_is_lossless(make_record):
    """A record decodes back to an equal record."""
    rec = make_record(shadow=ShadowDecision(rule="repetition", at_token=17), error=AuditError(type="X", message="m"))
    assert decode_record(encode_record(rec)) == rec


def test_decoding_rejects_unknown_fields(make_record):
    """Records are our own data: an unknown key is an error, not silently dropped."""
    data = json.loads(encode_record(make_record()))
    data["surprise"] = 1
    with pytest.raises(msgspec.ValidationError, match="surprise"):
        decode_record(json.dumps(data))


def test_numpy_like_scalars_are_encoded_as_python_values(make_record):
    """A scalar with .item() (numpy float32 from a classifier) does not break encoding."""

    class Scalar:
        def item(self) -> float:
            return 0.75

    data = json.loads(encode_record(make_record(domain_confidence=Scalar())))
    assert data["domain_confidence"] == 0.75


def test_timestamps_are_iso_8601_utc_with_milliseconds():
    """ts looks like 2026-05-01T12:00:00.123Z."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_now_iso())


def test_error_from_exception_keeps_type_and_capped_message_only():
    """An error is its class name and message, capped; no traceback, no locals."""
    err = AuditError.from_exception(WorkerError("worker fell over " + "x" * 2000))
    assert err.type == "WorkerError"
    assert err.message.startswith("worker fell over")
    assert len(err.message) < MAX_ERROR_MESSAGE + 40
    assert set(msgspec.structs.asdict(err)) == {"type", "message"}


def test_cap_text_marks_what_was_cut():
    """Long text is cut to the limit and says how many characters went."""
    assert cap_text("short", 10) == "short"
    assert cap_text("a" * 15, 10) == "a" * 10 + "…[5 more chars]"


def test_draft_finish_measures_ttft_and_duration():
    """finish() turns perf-counter marks into ttft_ms and duration_ms."""
    draft = AuditDraft(request_id="r", max_tokens=64)
    time.sleep(0.01)
    draft.first_token()
    first = draft.first_token_at
    draft.first_token()  # later calls do not move it
    assert draft.first_token_at == first
    rec = draft.finish()
    assert rec.ttft_ms is not None and rec.ttft_ms >= 10
    assert rec.duration_ms >= rec.ttft_ms
    assert rec.max_tokens == 64 and rec.error is None and rec.client_disconnected is False


def test_draft_without_first_token_has_null_ttft_and_records_the_error():
    """A request that failed before any token has ttft_ms null and the error's type and message."""
    draft = AuditDraft(request_id="r")
    draft.fail(WorkerError("boom"))
    rec = draft.finish()
    assert rec.ttft_ms is None
    assert rec.error == AuditError(type="WorkerError", message="boom")


def test_foreign_exceptions_keep_only_their_class():
    """A non-Stopgate exception may quote user input: only its class name reaches the record."""
    err = AuditError.from_exception(ValueError("cannot tokenize 'my secret prompt'"))
    assert err.type == "ValueError" and "secret" not in err.message


def test_draft_include_text_caps_both_texts():
    """With audit.include_text the texts are stored, capped."""
    draft = AuditDraft(request_id="r")
    draft.include_text("p" * 50, "c" * 5, limit=20)
    rec = draft.finish()
    assert rec.prompt_text == "p" * 20 + "…[30 more chars]"
    assert rec.completion_text == "c" * 5
