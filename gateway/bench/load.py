"""``stopgate bench load``: N concurrent streaming clients for T seconds against a gateway on loopback.

Without ``--url`` it starts its own ``stopgate serve`` (with its own Redis, audit log and API key)
on a free loopback port and stops it afterwards. Each client loops streamed chat requests with
varied prompts until the time is up; requests in flight then finish (bounded by ``--drain``).

Reported: completed requests, responses by status, 5xx, error frames inside 200 streams, client
errors (timeouts, resets), completion tokens/s, TTFT p50/p99, and the server's RSS after warm-up,
at its peak and after the run (``/proc/<pid>/status`` VmRSS), with the growth in percent.
Targets (issue 8): zero 5xx, RSS growth <= 5 %.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gateway.bench.load_clients import drive
from gateway.bench.server import local_redis, serve
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.settings import Settings

MAX_STREAMS = 512
MAX_SECONDS = 3600
RSS_GROWTH_TARGET_PCT = 5.0

SETTINGS = ("model", "device", "data_dir", "max_batch_size")


@dataclass(frozen=True)
class Options:
    streams: int = field(default=16, metadata={"help": f"concurrent streaming clients (<= {MAX_STREAMS})"})
    seconds: float = field(default=60, metadata={"help": f"how long clients start requests (<= {MAX_SECONDS})"})
    max_tokens: int = field(default=64, metadata={"help": "max_tokens of every request"})
    url: str | None = field(default=None, metadata={"help": "a running gateway on loopback (default: start one)"})
    api_key: str | None = field(default=None, metadata={"help": "the API key for --url"})
    pid: int | None = field(default=None, metadata={"help": "the --url gateway's process id, for RSS"})
    drain: float = field(default=180, metadata={"help": "seconds in-flight requests get to finish"})
    seed: int = field(default=0, metadata={"help": "prompt variation seed"})
    json: Path | None = field(default=None, metadata={"help": "write the figures here"})


def run(options: Options, settings: Settings) -> int:
    _check_bounds(options)
    if options.url:
        _require_loopback(options.url)
        figures = asyncio.run(drive(options.url.rstrip("/"), options.api_key, options.pid, options))
    else:
        with _own_gateway(options, settings) as own:
            figures = asyncio.run(drive(own.url, own.key, own.pid, options))
        figures["audit_records"] = own.audit_records
    _print(figures)
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _check_bounds(options: Options) -> None:
    if not 1 <= options.streams <= MAX_STREAMS:
        raise ConfigError(f"--streams must be between 1 and {MAX_STREAMS}")
    if not 0 < options.seconds <= MAX_SECONDS:
        raise ConfigError(f"--seconds must be in (0, {MAX_SECONDS}]")
    if options.max_tokens < 1:
        raise ConfigError("--max-tokens must be >= 1")


def _require_loopback(url: str) -> None:
    """A load generator aimed elsewhere would be a denial of service: loopback only."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"bench load only targets loopback addresses, not {host!r}")


# -- the gateway under test ------------------------------------------------------------------------


@dataclass
class OwnGateway:
    url: str
    key: str
    pid: int
    audit_records: int | None = None  # counted once it has stopped (its audit queue flushed)


@contextlib.contextmanager
def _own_gateway(options: Options, settings: Settings) -> Iterator[OwnGateway]:
    """``stopgate serve`` on a free loopback port with its own Redis and audit log; after it stops, the
    records in its audit log are counted."""
    key = "bench-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="stopgate-load-") as tmp, local_redis(Path(tmp) / "redis") as redis:
        audit = Path(tmp) / "audit.jsonl"  # counted after the gateway stops
        env = {
            "STOPGATE_REDIS_URL": redis.url,
            "STOPGATE_API_KEYS": key,
            "STOPGATE_AUDIT_LOG": str(audit),
            "STOPGATE_MAX_BATCH_SIZE": str(settings.max_batch_size),
            # Room above the client count: a client may open its next stream a moment before the
            # server has released the previous one.
            "STOPGATE_MAX_CONCURRENT_STREAMS": str(options.streams * 2),
        }
        with serve(settings, Path(tmp) / "gateway.log", env) as gateway:
            own = OwnGateway(gateway.url, key, gateway.pid)
            yield own
        own.audit_records = sum(1 for line in audit.read_text().splitlines() if line.strip()) if audit.exists() else 0


def _print(figures: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"stopgate bench load ({figures['streams']} streams, {figures['seconds']:g} s)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    growth = figures["rss_growth_pct"]
    targets = {
        "server_errors_5xx": ("0", figures["server_errors_5xx"] == 0),
        "rss_growth_pct": (f"<= {RSS_GROWTH_TARGET_PCT:g}", growth is not None and growth <= RSS_GROWTH_TARGET_PCT),
    }
    if figures.get("audit_records") is not None:
        answered = figures["answered_200"]
        targets["audit_records"] = (f">= {answered}", figures["audit_records"] >= answered)
    for name, value in figures.items():
        shown = json.dumps(value) if isinstance(value, dict) else ("n/a" if value is None else f"{value:g}")
        target = ""
        if name in targets:
            text, met = targets[name]
            target = f"{text} {'[green]ok[/]' if met else '[red]missed[/]'}"
        table.add_row(name, shown, target)
    Console().print(table)
