"""Fixtures for the classifier tests: one real embedder per session and a tiny domain set."""

from __future__ import annotations

from pathlib import Path

import pytest
from domain_files import TINY_DOMAINS, write_domains

from gateway.classify.embedder import Embedder


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The packaged all-MiniLM-L6-v2, loaded once for the session."""
    return Embedder()


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the session: equal domain files are embedded and fitted once."""
    return tmp_path_factory.mktemp("classify-cache")


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A STOPGATE_DATA_DIR shared by the command tests, so its embedding cache warms once."""
    return tmp_path_factory.mktemp("classify-data")


@pytest.fixture()
def tiny_domains(tmp_path: Path) -> Path:
    """A directory with three small, well separated domains (math, support, general)."""
    return write_domains(tmp_path / "domains", TINY_DOMAINS)
