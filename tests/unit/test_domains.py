"""The built-in domain names are the shipped domain files' names, the fallback among them."""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.domains import BUILTIN_DOMAINS, FALLBACK_DOMAIN

SHIPPED = Path(__file__).resolve().parents[2] / "domains"


def test_builtin_domains_are_the_shipped_files() -> None:
    """BUILTIN_DOMAINS names exactly the domains in domains/*.yaml, and the fallback is one of them."""
    names = {yaml.safe_load(f.read_text(encoding="utf-8"))["name"] for f in SHIPPED.glob("*.yaml")}
    assert set(BUILTIN_DOMAINS) == names and len(BUILTIN_DOMAINS) == len(names)
    assert FALLBACK_DOMAIN in BUILTIN_DOMAINS
