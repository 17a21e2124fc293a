"""Domain names every layer agrees on, with no imports: the classifier, routing and the CLI read them here."""

from __future__ import annotations

FALLBACK_DOMAIN = "general"
"""Where a request goes when no domain is confident (and when there is no classifier at all)."""

BUILTIN_DOMAINS = ("math", "code", "factual", "support", "small_talk", FALLBACK_DOMAIN)
"""The domains shipped in ``domains/``: the names a command assumes when no domain files are at hand."""
