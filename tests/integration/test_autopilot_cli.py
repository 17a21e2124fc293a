"""``stopgate autopilot status|propose|apply`` against its own real Redis server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.autopilot.samples import Sample, SampleStore, SampleToken
from gateway.cli import main
from gateway.policy.loader import parse_policy
from gateway.policy.records import PolicyRecords, connect
from gateway.redis_server import LocalRedis

ANSWER = " ".join(f"Sentence number {i} says something {i}." for i in range(1, 7))


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A server of its own: the default key prefixes here must not reach the session's gateway."""
    server = LocalRedis(data_dir=tmp_path / "redis")
    server.start()
    yield server.url
    server.stop()


def seed(url: str) -> None:
    async def go() -> None:
        client = connect(url)
        records = PolicyRecords(client)
        doc = {
            "domain": "small_talk",
            "max_tokens": 128,
            "rules": [{"sentences": {"max": 8}}],
            "sample_full_rate": 1.0,
            "autopilot": {"target_agreement": 0.8, "min_samples": 12},
        }
        policy = parse_policy(doc, source="test", domains=["small_talk"], expect_domain="small_talk")
        written = await records.write(policy, source="admin")
        assert written is not None
        words = ANSWER.split(" ")
        events = tuple(SampleToken(i, w + " ", -0.1) for i, w in enumerate(words))
        store = SampleStore(url, client=client)
        await store.write(
            [
                Sample(
                    domain="small_talk",
                    policy_version=written.version,
                    policy_hash=written.hash,
                    request_id=f"r{i}",
                    ts=time.time(),
                    max_tokens=128,
                    events=events,
                )
                for i in range(20)
            ]
        )
        await client.aclose()

    asyncio.run(go())


def test_status_propose_apply(own_redis: str, capsys: pytest.CaptureFixture[str]) -> None:
    """status shows samples and the bound; propose writes no version; apply writes the proposal."""
    seed(own_redis)
    flags = ["--redis-url", own_redis]
    assert main(["autopilot", "status", "small_talk", *flags]) == 0
    out = capsys.readouterr().out
    assert "small_talk: v1, autopilot apply target 0.8" in out and "20 samples held" in out
    assert "current: agreement 1.000" in out
    assert main(["autopilot", "propose", "small_talk", *flags]) == 0
    assert "small_talk: propose:" in capsys.readouterr().out
    assert main(["autopilot", "status", "small_talk", "--format", "json", *flags]) == 0
    row = json.loads(capsys.readouterr().out)["data"][0]
    assert row["version"] == 1 and row["proposal"]["action"] == "propose"
    assert main(["autopilot", "apply", "small_talk", *flags]) == 0
    assert "small_talk: v2 is now active" in capsys.readouterr().out
    assert main(["autopilot", "apply", "small_talk", *flags]) == 1  # nothing pending any more
    assert "no autopilot proposal" in capsys.readouterr().err
