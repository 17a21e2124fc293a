"""Real engines behind the remote worker: collected only with ``STOPGATE_TEST_ENGINE=vllm|llamacpp``.

``make test-engines`` runs this directory once per engine. ``STOPGATE_ENGINE_URL`` points the
tests at an engine already serving the embedded model instead of starting one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engines.launch import Engine, running

KIND = os.environ.get("STOPGATE_TEST_ENGINE", "")
collect_ignore_glob = [] if KIND else ["test_*.py"]


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The engine under test, started once for the session (or the one at STOPGATE_ENGINE_URL)."""
    given = os.environ.get("STOPGATE_ENGINE_URL")
    if given:
        log = Path(os.environ.get("STOPGATE_ENGINE_LOG", "/dev/null"))
        yield Engine(KIND, given.rstrip("/"), log, int(os.environ.get("STOPGATE_ENGINE_PID", "0")))
        return
    with running(KIND, tmp_path_factory.mktemp("engine") / f"{KIND}.log") as started:
        yield started
