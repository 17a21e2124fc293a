"""fp16 weights on CPU (``STOPGATE_DTYPE=float16``): each ``nn.Linear`` keeps its weight packed in fp16 and
computes in fp32 (fbgemm's fp16 GEMM, ``quantized::linear_dynamic_fp16``, AVX2 + F16C).

One decoding row reads every weight once per token, so a step is bound by memory bandwidth: 540 MB of
fp32 weights per token for SmolLM2-135M. fp16 halves that, with no fp16 arithmetic: the weights are
widened in registers and activations stay fp32. A matmul's relative error is ~2e-4 (fp16's 11-bit
significand; bf16 has 8, and no instructions on AVX2-only CPUs). Greedy text is mostly fp32's but may
part from it at a near tie, so generations cached under fp32 are not reused (its own cache key).
"""

from __future__ import annotations

from typing import Any

import torch


class Fp16Linear(torch.nn.Module):
    """An ``nn.Linear`` with its weight (and bias) packed for fbgemm's fp16 GEMM; inputs and outputs fp32."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        bias = linear.bias.detach().float() if linear.bias is not None else None
        self._packed: Any = torch.ops.quantized.linear_prepack_fp16(linear.weight.detach().float(), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).contiguous()
        out = torch.ops.quantized.linear_dynamic_fp16(flat, self._packed)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weights=fp16"


def fp16_weights_supported() -> bool:
    """This torch build has fbgemm's fp16 ops (x86 builds do)."""
    return "fbgemm" in torch.backends.quantized.supported_engines


def to_fp16_weights(model: torch.nn.Module) -> int:
    """Replace every ``nn.Linear`` in ``model`` (in place) by an ``Fp16Linear``; returns how many.

    A tied output projection gets its own fp16 copy; the input embedding keeps the fp32 table (a
    lookup reads one row per token, not the table)."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, Fp16Linear(child))
                swapped += 1
    return swapped
