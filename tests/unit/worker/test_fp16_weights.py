"""fp16 weights on CPU: an ``Fp16Linear`` computes what its ``nn.Linear`` did, to fp16's precision, in any shape."""

from __future__ import annotations

import pytest
import torch

from gateway.worker.fp16_weights import Fp16Linear, fp16_weights_supported, to_fp16_weights

pytestmark = pytest.mark.skipif(not fp16_weights_supported(), reason="this torch build has no fbgemm")


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 64), (5, 64), (2, 3, 64)])
def test_an_fp16_linear_matches_its_linear_within_fp16_precision(bias: bool, shape: tuple[int, ...]) -> None:
    """Rows, batches of rows and (batch, sequence) inputs: same shape out, relative error < 1e-3."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48, bias=bias)
    x = torch.randn(*shape)
    with torch.inference_mode():
        want, got = linear(x), Fp16Linear(linear)(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert relative_error(got, want) < 1e-3


def test_a_non_contiguous_input_is_taken() -> None:
    """A slice of a larger tensor (the last position of a sequence) goes through unchanged in meaning."""
    linear = torch.nn.Linear(64, 16)
    x = torch.randn(2, 7, 64)[:, -1:, :]
    with torch.inference_mode():
        assert relative_error(Fp16Linear(linear)(x), linear(x)) < 1e-3


def test_every_linear_of_a_model_is_swapped_and_the_rest_kept() -> None:
    """Nested linears all become Fp16Linear; an embedding (and a tied projection's table) stays fp32."""
    embed = torch.nn.Embedding(10, 8)
    head = torch.nn.Linear(8, 10, bias=False)
    head.weight = embed.weight  # tied, like SmolLM2's output projection
    model = torch.nn.ModuleDict({"embed": embed, "block": torch.nn.Sequential(torch.nn.Linear(8, 8)), "head": head})
    assert to_fp16_weights(model) == 2
    assert isinstance(model["block"][0], Fp16Linear) and isinstance(model["head"], Fp16Linear)
    assert model["embed"].weight.dtype == torch.float32
