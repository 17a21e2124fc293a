"""Flags shared by commands: every ``STOPGATE_*`` setting as a ``--kebab-case`` flag."""

from __future__ import annotations

import argparse
import dataclasses

from gateway.redis_server import discover_local_url
from gateway.settings import Settings

_FLAGGED = (
    "host",
    "port",
    "redis_url",
    "model",
    "device",
    "domains_dir",
    "policies_dir",
    "data_dir",
    "audit_log",
    "api_keys",
    "admin_key",
    "worker_url",
    "max_concurrent_streams",
    "max_batch_size",
    "rate_limit_rpm",
    "rate_limit_tpm",
    "log_level",
)


def add_settings_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] = _FLAGGED) -> None:
    for name in only:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=f"setting_{name}",
            default=None,
            help=f"overrides STOPGATE_{name.upper()}",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)}
    overrides = {
        key.removeprefix("setting_"): value
        for key, value in vars(args).items()
        if key.startswith("setting_") and key.removeprefix("setting_") in names
    }
    settings = Settings.from_env(**overrides)
    if not settings.redis_url:
        # No Redis configured: use the local server a running `stopgate serve` started, if there is one.
        found = discover_local_url(settings.data_dir)
        if found:
            settings = dataclasses.replace(settings, redis_url=found)
    return settings
