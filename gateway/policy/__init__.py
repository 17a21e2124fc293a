"""Stopping policies: schema, YAML loader, the pure engine, and the Redis-backed store."""
