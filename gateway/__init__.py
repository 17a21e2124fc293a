"""Stopgate: a streaming LLM gateway that enforces per-domain early-stopping policies."""

__version__ = "0.1.0"
