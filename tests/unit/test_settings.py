"""Settings come from STOPGATE_* variables, then flags; bad values are ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import Settings


def test_env_values_are_typed() -> None:
    """Ints, paths and comma lists are parsed from their env var strings."""
    s = Settings.from_env(
        {
            "STOPGATE_PORT": "9001",
            "STOPGATE_API_KEYS": "a, b,,c",
            "STOPGATE_POLICIES_DIR": "/tmp/p",
            "STOPGATE_WORKER_URL": "http://w:1",
        }
    )
    assert s.port == 9001
    assert s.api_keys == ("a", "b", "c")
    assert s.policies_dir == Path("/tmp/p")
    assert s.worker_url == ("http://w:1",)


def test_flags_override_env() -> None:
    """An explicit override (a CLI flag) beats the environment."""
    assert Settings.from_env({"STOPGATE_PORT": "9001"}, port="9002").port == 9002


@pytest.mark.parametrize(
    "env", [{"STOPGATE_PORT": "eighty"}, {"STOPGATE_DEVICE": "tpu"}, {"STOPGATE_MAX_CONCURRENT_STREAMS": "0"}]
)
def test_bad_values_are_config_errors(env: dict[str, str]) -> None:
    """Unparseable or out-of-range settings raise ConfigError naming the variable."""
    (name,) = env
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)
