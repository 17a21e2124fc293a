"""Files against the store: an edited file that is not live is reported; STOPGATE_POLICIES_SOURCE picks the winner."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog

from gateway.cli import main
from gateway.http.admin_policies import policy_view
from gateway.policy.store import PolicyStore
from tests.integration.policy_files import DOMAINS, write_policies

PREFIX = "test:policy-files"  # its own key space (the session's gateway uses the default one)


@pytest.fixture()
def policies_dir(tmp_path: Path) -> Path:
    return write_policies(tmp_path)


async def _store(redis_url: str, policies_dir: Path, source: str = "store") -> PolicyStore:
    store = PolicyStore(redis_url, policies_dir, DOMAINS, prefix=PREFIX, source=source)
    await store.start()
    assert store.healthy, store.degraded_reason
    return store


async def _put_one_sentence(redis_url: str, policies_dir: Path) -> int:
    """A PUT through the API that makes the active factual policy differ from its file."""
    store = await _store(redis_url, policies_dir)
    try:
        doc = store.get("factual").document()
        doc["max_tokens"] = 128
        return (await store.put("factual", doc, source="admin")).version
    finally:
        await store.close()


async def test_a_file_that_differs_from_the_active_version_is_reported_on_start(redis_url, policies_dir):
    """After a PUT, a restart keeps the store's version (the default), warns with both hashes, and the admin view
    shows the file's hash beside the active one."""
    version = await _put_one_sentence(redis_url, policies_dir)
    with structlog.testing.capture_logs() as logs:
        store = await _store(redis_url, policies_dir)
    try:
        assert store.get("factual").version == version  # the store wins
        (drift,) = store.drift()
        assert drift.domain == "factual" and drift.active_version == version
        assert drift.file_hash == store.file_hash("factual") != store.get("factual").hash
        warned = [e for e in logs if e["event"] == "policy.file_differs"]
        assert warned and warned[0]["file_hash"] == drift.file_hash and warned[0]["active_hash"] == drift.active_hash
        view = policy_view("factual", store.get("factual"), store)  # GET /admin/policies shows both hashes
        assert view["file_differs"] is True and view["file_hash"] == drift.file_hash != view["hash"]
    finally:
        await store.close()


async def test_policies_source_files_makes_the_file_the_active_version_on_start(redis_url, policies_dir):
    """With source=files the differing file becomes a new version at start; nothing differs afterwards."""
    version = await _put_one_sentence(redis_url, policies_dir)
    store = await _store(redis_url, policies_dir, source="files")
    try:
        active = store.get("factual")
        assert active.version == version + 1 and active.hash == store.file_hash("factual")
        assert store.drift() == []
    finally:
        await store.close()


async def _put_in_default_key_space(redis_url: str, policies_dir: Path) -> None:
    store = PolicyStore(redis_url, policies_dir, DOMAINS)  # the CLI reads the default key space
    await store.start()
    try:
        doc = store.get("factual").document()
        doc["max_tokens"] = 128
        await store.put("factual", doc, source="admin")
    finally:
        await store.close()


def test_cli_validate_warns_and_diff_names_the_differing_domain(redis_url, policies_dir, monkeypatch, capsys):
    """`policies validate` stays 0 but warns; `policies diff` prints both hashes and exits 1."""
    asyncio.run(_put_in_default_key_space(redis_url, policies_dir))
    monkeypatch.setenv("STOPGATE_REDIS_URL", redis_url)
    args = [str(policies_dir), "--known-domains", ",".join(DOMAINS)]
    assert main(["policies", "validate", *args]) == 0
    out = capsys.readouterr()
    assert "warning: factual: the file (sha256:" in out.err and "differs from the active" in out.err
    assert main(["policies", "diff", *args]) == 1
    out = capsys.readouterr().out
    assert "factual: the file (sha256:" in out and "default: same as the active version" in out
