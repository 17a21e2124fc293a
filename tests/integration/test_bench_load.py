"""`stopgate bench load` against the session gateway: a short run adds up and finds no 5xx."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.cli import main
from tests.integration.conftest import RunningGateway

pytestmark = pytest.mark.model


def test_short_load_run_reports_its_figures(gateway: RunningGateway, tmp_path: Path) -> None:
    """Three streams for two seconds: requests complete with tokens and TTFT, no 5xx, RSS read."""
    report = tmp_path / "load.json"
    argv = f"bench load --url {gateway.url} --pid {os.getpid()} --streams 3 --seconds 2 --max-tokens 3 --drain 60"
    with ThreadPoolExecutor(1) as pool:  # run() owns its event loop
        assert pool.submit(main, [*argv.split(), "--json", str(report)]).result() == 0
    figures = json.loads(report.read_text())
    assert figures["requests_completed"] >= 3
    assert figures["server_errors_5xx"] == 0 and figures["error_frames"] == 0 and not figures["client_errors"]
    assert figures["responses_by_status"] == {"200": figures["requests_completed"]}
    assert 0 < figures["completion_tokens"] <= 3 * figures["requests_completed"]
    assert figures["ttft_p50_ms"] > 0 and figures["ttft_p99_ms"] >= figures["ttft_p50_ms"]
    assert figures["rss_before_mb"] > 0 and figures["rss_growth_pct"] is not None
