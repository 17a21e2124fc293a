"""Flags shared by commands: every ``STOPGATE_*`` setting, and a typed options dataclass, as flags."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.redis_server import discover_local_url
from gateway.settings import Settings

T = TypeVar("T")

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


# -- typed options: a frozen dataclass's fields as flags ----------------------------------------

_SCALARS: dict[Any, Callable[[str], Any]] = {int: int, float: float, str: str, Path: Path}


def _field_type(name: str, hint: Any) -> Any:
    """``int``/``float``/``str``/``Path``/``bool`` for a field annotated so, or ``X | None``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if typing.get_origin(hint) in (types.UnionType, typing.Union) and len(args) == 1 else hint
    if base is not bool and base not in _SCALARS:
        raise TypeError(f"option {name!r}: unsupported type {hint!r}")
    return base


def add_option_flags(parser: argparse.ArgumentParser, options: type[Any]) -> None:
    """One ``--kebab-case`` flag per field of the dataclass ``options`` (no default: required;
    ``bool``: a switch that defaults to False); the help text is ``metadata["help"]``."""
    hints = typing.get_type_hints(options)
    for f in dataclasses.fields(options):
        kind = _field_type(f.name, hints[f.name])
        flag, dest, help_text = "--" + f.name.replace("_", "-"), f"option_{f.name}", f.metadata.get("help")
        if kind is bool:
            parser.add_argument(flag, dest=dest, action="store_true", help=help_text)
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if f.default is dataclasses.MISSING else f.default
        parser.add_argument(
            flag,
            dest=dest,
            metavar=f.name.upper(),
            type=_SCALARS[kind],
            required=required,
            default=default,
            help=help_text,
        )


def options_from_args(options: type[T], args: argparse.Namespace) -> T:
    """The ``options`` dataclass filled from flags that ``add_option_flags`` added."""
    values = {f.name: getattr(args, f"option_{f.name}") for f in dataclasses.fields(options)}  # type: ignore[arg-type]
    return options(**values)
