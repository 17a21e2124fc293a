"""SIGTERM on a real ``stopgate serve`` with streams in flight: every stream well-formed, every record kept, exit 0."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from gateway.audit.verify import verify_file
from tests.integration.processes import audit_ids, gateway_env, running, start_streams

pytestmark = pytest.mark.model

PROMPTS = [f"Tell me a long story about a lighthouse keeper named Ann, part {i}." for i in range(8)]


def _wait_first(states, threads, within: float = 240) -> None:
    deadline = time.monotonic() + within
    for state in states:
        assert state.first.wait(max(0.1, deadline - time.monotonic())), "a stream never started"
    assert all(s.status == 200 for s in states), [s.status for s in states]
    assert any(t.is_alive() for t in threads), "every stream ended before SIGTERM: the drain was not exercised"


def test_sigterm_ends_eight_inflight_streams_cleanly(tmp_path, redis_url):
    """8 streams running past the drain deadline: each ends with an error frame and [DONE], each is audited
    (error Draining), /readyz stops answering 200 at once, new requests are refused, and the exit status is 0."""
    env = gateway_env(tmp_path, redis_url, STOPGATE_DRAIN_SECONDS="3")
    with running(["serve"], env, tmp_path, "gateway") as gw:
        states, threads = start_streams(gw.url, PROMPTS, max_tokens=400)
        _wait_first(states, threads)
        gw.signal(signal.SIGTERM)
        time.sleep(0.5)
        try:
            ready = httpx.get(gw.url + "/readyz", timeout=5).status_code
        except httpx.HTTPError:
            ready = None  # no longer accepting connections
        assert ready != 200
        status = gw.wait(90)
        for t in threads:
            t.join(30)
        log = gw.tail(40)
    assert status == 0, log
    assert all(s.well_formed for s in states), [(s.done, s.finish_reason, s.error, s.exc) for s in states]
    ended = [s for s in states if s.error is not None]
    assert all(s.error and s.error["code"] == "shutting_down" for s in ended)
    audit = tmp_path / "audit.jsonl"
    assert {s.request_id for s in states} <= audit_ids(audit)
    assert verify_file(audit).ok


def test_streams_that_finish_within_the_deadline_get_their_whole_answer(tmp_path, redis_url):
    """Short answers in flight at SIGTERM run to their own end (finish_reason, no error frame) before exit 0."""
    env = gateway_env(tmp_path, redis_url, STOPGATE_DRAIN_SECONDS="120")
    with running(["serve"], env, tmp_path, "gateway") as gw:
        states, threads = start_streams(gw.url, PROMPTS[:3], max_tokens=12)
        _wait_first(states, threads)
        gw.signal(signal.SIGTERM)
        status = gw.wait(150)
        for t in threads:
            t.join(30)
        log = gw.tail(40)
    assert status == 0, log
    assert all(s.done and s.finish_reason and s.error is None for s in states), [
        (s.done, s.finish_reason, s.error, s.exc) for s in states
    ]
    assert {s.request_id for s in states} <= audit_ids(tmp_path / "audit.jsonl")
