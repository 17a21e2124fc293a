"""The thinking-markers setting (STOPGATE_THINK_MARKERS)."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.settings import Settings


def test_think_markers_default_and_from_env() -> None:
    """Default <think>/</think>; the env var takes 'start,end'."""
    assert Settings.from_env({}).think_markers == ("<think>", "</think>")
    env = {"STOPGATE_THINK_MARKERS": "[T],[/T]"}
    assert Settings.from_env(env).think_markers == ("[T]", "[/T]")


def test_think_markers_must_be_two_distinct() -> None:
    """One marker, or the same one twice, is a configuration error."""
    for raw in ("<think>", "a,a", "a,b,c"):
        with pytest.raises(ConfigError):
            Settings.from_env({"STOPGATE_THINK_MARKERS": raw})
