"""A policy's sample_full_rate: stopped answers are generated on, unseen, and the audit compares them."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.conftest import ADMIN_KEY, RunningGateway

pytestmark = pytest.mark.model

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def wait_for_store(gw: RunningGateway, timeout_s: float = 30) -> None:
    """Other tests stop and restart the session's Redis; admin writes need the store connected again."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if httpx.get(gw.url + "/readyz").json()["status"] == "ready":
            return
        time.sleep(0.2)
    raise AssertionError("policy store did not reconnect to Redis")


def test_sampled_requests_record_full_length_and_agreement(gateway: RunningGateway) -> None:
    """With sample_full_rate 1.0 the client gets the stopped answer; the audit gets the full length too."""
    url = gateway.url + "/admin/policies/small_talk"
    wait_for_store(gateway)
    original = httpx.get(url, headers=ADMIN).json()["policy"]
    try:
        r = httpx.put(url, headers=ADMIN, json={**original, "sample_full_rate": 1.0})
        assert r.status_code == 200, r.text
        resp = gateway.chat("thanks again", max_tokens=96, headers={"x-stopgate-domain": "x"})
        body = resp.json()
        rid = resp.headers["x-stopgate-request-id"]
        assert body["stopgate"]["domain"] == "small_talk"
        assert body["stopgate"]["stop_rule"] is not None
        record = None
        deadline = time.monotonic() + 60
        while record is None and time.monotonic() < deadline:
            rows = httpx.get(gateway.url + "/admin/audit", headers=ADMIN, params={"since": "10m"}).json()["data"]
            record = next((row for row in rows if row["request_id"] == rid), None)
            time.sleep(0.5)
        assert record is not None
        assert record["completion_tokens"] == body["usage"]["completion_tokens"]
        assert record["full_completion_tokens"] > record["completion_tokens"]
        assert isinstance(record["answer_agreed"], bool)
    finally:
        httpx.put(url, headers=ADMIN, json=original)
