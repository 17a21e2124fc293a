"""STOPGATE_DTYPE: auto picks bf16 only where it is native; cache keys name any dtype but the device's usual one."""

from __future__ import annotations

import pytest
import torch

from gateway.errors import ConfigError
from gateway.worker import model
from gateway.worker.model import pick_dtype, unusual_dtype


def test_explicit_dtypes_are_taken_as_given() -> None:
    """float32 and bfloat16 are what they say on any device."""
    assert pick_dtype("float32", torch.device("cpu")) == torch.float32
    assert pick_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


@pytest.mark.parametrize(("native", "want"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_on_cpu_follows_native_bf16(monkeypatch: pytest.MonkeyPatch, native: bool, want: torch.dtype) -> None:
    """auto on a CPU: bf16 with AVX512-BF16/AMX, fp32 without (bf16 matmuls are slower there)."""
    monkeypatch.setattr(model, "native_bf16", lambda: native)
    assert pick_dtype("auto", torch.device("cpu")) == want


def test_auto_on_cuda_is_bf16() -> None:
    """auto on CUDA is bf16."""
    assert pick_dtype("auto", torch.device("cuda")) == torch.bfloat16


def test_an_unknown_dtype_is_a_config_error() -> None:
    """A dtype name outside the four is refused."""
    with pytest.raises(ConfigError):
        pick_dtype("int8", torch.device("cpu"))


def test_float16_on_cpu_needs_fbgemm(monkeypatch: pytest.MonkeyPatch) -> None:
    """float16 on CPU is fp16 weights through fbgemm; a torch without it is a config error, not a slow path."""
    assert pick_dtype("float16", torch.device("cpu")) == torch.float16
    monkeypatch.setattr(model, "fp16_weights_supported", lambda: False)
    with pytest.raises(ConfigError, match="fbgemm"):
        pick_dtype("float16", torch.device("cpu"))


def test_cache_key_suffix_only_for_an_unusual_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU fp32 keeps the key it had; CPU bf16 gets its own."""
    monkeypatch.setattr(model, "native_bf16", lambda: False)
    assert unusual_dtype("cpu", "auto") == "" and unusual_dtype("cpu", "float32") == ""
    assert unusual_dtype("cpu", "float16") == "float16"
    assert unusual_dtype("cpu", "bfloat16") == "bfloat16"
