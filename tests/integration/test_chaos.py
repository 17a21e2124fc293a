"""Chaos on real processes over loopback, bounded in time: a worker killed mid-stream, Redis killed under load."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest

from gateway.redis_server import LocalRedis
from tests.integration.processes import ADMIN, MODEL, audit_ids, gateway_env, running, start_streams

pytestmark = pytest.mark.model

STORY = "Tell me a long story about a fox who learns to sail, with many details."
ADMIN_AUTH = {"authorization": f"Bearer {ADMIN}"}


def _kill(redis: LocalRedis) -> None:
    proc = redis._proc  # the test owns this server: SIGKILL it, no save, no goodbye
    assert proc is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    redis._proc = None


def _chat(url: str, within: float = 60) -> httpx.Response:
    """A short request, retried while the gateway notices a dead worker (its health poll)."""
    deadline = time.monotonic() + within
    while True:
        r = httpx.post(
            url + "/v1/chat/completions",
            json={"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
            timeout=120,
        )
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        time.sleep(1)


def test_a_worker_killed_mid_stream(tmp_path, redis_url):
    """Two workers; one is SIGKILLed while streams run: its clients get an error frame and [DONE], the audit
    record carries the error, and the gateway goes on serving through the other worker."""
    env = gateway_env(tmp_path, redis_url)
    with (
        running(["worker"], env, tmp_path, "worker-a", ready="/v1/models") as a,
        running(["worker"], env, tmp_path, "worker-b", ready="/v1/models") as b,
        running(["serve"], {**env, "STOPGATE_WORKER_URL": f"{a.url},{b.url}"}, tmp_path, "gateway") as gw,
    ):
        states, threads = start_streams(gw.url, [STORY] * 4, max_tokens=60)
        for state in states:
            assert state.first.wait(240)
        a.signal(signal.SIGKILL)
        for t in threads:
            t.join(300)
        assert all(s.well_formed for s in states), [(s.done, s.finish_reason, s.error, s.exc) for s in states]
        cut = [s for s in states if s.error is not None]
        assert cut, "no stream was on the killed worker"
        after = _chat(gw.url)
        assert after.status_code == 200, after.text[:300]
        time.sleep(2)  # the audit writer's next batch
        records = {
            json.loads(line)["request_id"]: json.loads(line)
            for line in (tmp_path / "audit.jsonl").read_text().splitlines()
        }
        for state in cut:
            assert records[state.request_id]["error"] is not None


def test_redis_killed_during_streaming_and_a_policy_write(tmp_path):
    """Redis SIGKILLed under running streams: the streams finish untouched, a policy write is a 503 that
    changes nothing, and once Redis is back every record of the outage reaches the stream."""
    redis = LocalRedis(tmp_path / "redis")
    redis.start()
    try:
        env = gateway_env(tmp_path, redis.url)
        with running(["serve"], env, tmp_path, "gateway") as gw:
            before = httpx.get(gw.url + "/admin/policies/factual", headers=ADMIN_AUTH, timeout=10).json()
            states, threads = start_streams(gw.url, [STORY] * 3, max_tokens=48)
            for state in states:
                assert state.first.wait(240)
            _kill(redis)
            document = dict(before["policy"], max_tokens=99)
            put = httpx.put(gw.url + "/admin/policies/factual", json=document, headers=ADMIN_AUTH, timeout=30)
            assert put.status_code == 503 and put.json()["error"]["message"], put.text[:300]
            for t in threads:
                t.join(180)
            assert all(s.done and s.finish_reason and s.error is None for s in states), [
                (s.done, s.finish_reason, s.error, s.exc) for s in states
            ]
            redis.start()  # same port, empty (killed: nothing saved)
            deadline = time.monotonic() + 60
            while True:
                r = httpx.get(gw.url + "/admin/policies/factual", headers=ADMIN_AUTH, timeout=10).json()
                if r["hash"] == before["hash"] or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert r["hash"] == before["hash"]  # the failed write left nothing behind
            import redis as redis_client

            client = redis_client.Redis.from_url(redis.url)
            wanted = {s.request_id for s in states}
            while time.monotonic() < deadline:
                values = {f[b"request_id"].decode() for _, f in client.xrange("stopgate:audit")}
                if wanted <= values:
                    break
                time.sleep(0.5)
            client.close()
            assert wanted <= values
            assert wanted <= audit_ids(tmp_path / "audit.jsonl")
    finally:
        redis.stop()


def test_two_replicas_on_one_redis_one_killed_mid_load(tmp_path):
    """Two gateway replicas share one Redis and one worker; one is SIGKILLed under load: the other's streams
    finish untouched and audited, and a policy update through it is written and served."""
    redis = LocalRedis(tmp_path / "redis")
    redis.start()
    try:
        env = gateway_env(tmp_path, redis.url)
        with running(["worker"], env, tmp_path, "worker", ready="/v1/models") as worker:
            remote = {"STOPGATE_WORKER_URL": worker.url}
            with (
                running(
                    ["serve"], {**env, **remote, "STOPGATE_AUDIT_LOG": str(tmp_path / "a.jsonl")}, tmp_path, "a"
                ) as a,
                running(
                    ["serve"], {**env, **remote, "STOPGATE_AUDIT_LOG": str(tmp_path / "b.jsonl")}, tmp_path, "b"
                ) as b,
            ):
                on_a, threads_a = start_streams(a.url, [STORY] * 3, max_tokens=48)
                on_b, threads_b = start_streams(b.url, [STORY] * 3, max_tokens=48)
                for state in on_a + on_b:
                    assert state.first.wait(240)
                a.signal(signal.SIGKILL)
                before = httpx.get(b.url + "/admin/policies/factual", headers=ADMIN_AUTH, timeout=10).json()
                document = dict(before["policy"], max_tokens=99)
                put = httpx.put(b.url + "/admin/policies/factual", json=document, headers=ADMIN_AUTH, timeout=30)
                assert put.status_code == 200, put.text[:300]
                for t in threads_a + threads_b:
                    t.join(240)
                assert all(s.done and s.finish_reason and s.error is None for s in on_b), [
                    (s.done, s.finish_reason, s.error, s.exc) for s in on_b
                ]
                assert all(not s.done for s in on_a)  # their connections died with the replica
                after = httpx.get(b.url + "/admin/policies/factual", headers=ADMIN_AUTH, timeout=10).json()
                assert after["policy"]["max_tokens"] == 99 and after["version"] == before["version"] + 1
                assert _chat(b.url).status_code == 200
                deadline = time.monotonic() + 30
                wanted = {s.request_id for s in on_b}
                while not wanted <= audit_ids(tmp_path / "b.jsonl") and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert wanted <= audit_ids(tmp_path / "b.jsonl")
    finally:
        redis.stop()
