"""Incremental detokenization: token-by-token text equals decoding the whole answer, multi-byte included."""

from __future__ import annotations

from typing import Any

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from gateway.worker.detokenize import IncrementalDetokenizer, _decoder

TEXT = "Café au lait, naïve résumé: 日本語のテキスト 🙂 and plain words."


@pytest.fixture(scope="module", params=[False, True], ids=["no-cleanup", "cleanup"])
def tokenizer(request: pytest.FixtureRequest) -> Any:
    """A small byte-level BPE (as SmolLM2's), trained here so multi-byte characters span several tokens."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|im_end|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(["plain words and a few more plain words, au lait"], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", clean_up_tokenization_spaces=request.param
    )


def answer_ids(tokenizer: Any) -> list[int]:
    """TEXT as a model would answer it: its tokens, then the end-of-turn token."""
    return [*tokenizer.encode(TEXT, add_special_tokens=False), tokenizer.eos_token_id]


def test_pushed_pieces_add_up_to_the_whole_decode(tokenizer: Any) -> None:
    """Joined per-token pieces equal decode(all ids); no piece ends in half a character."""
    ids = answer_ids(tokenizer)
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)  # some characters really span tokens
    detok = IncrementalDetokenizer(tokenizer)
    pieces = [detok.push(i) for i in ids]
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True) == TEXT
    assert not any(p.endswith("\ufffd") for p in pieces)


def test_decoder_matches_the_tokenizers_decode(tokenizer: Any) -> None:
    """The direct Rust decode gives exactly tokenizer.decode(ids, skip_special_tokens=True) on every prefix."""
    ids = answer_ids(tokenizer)
    decode = _decoder(tokenizer)
    for end in range(len(ids) + 1):
        assert decode(ids[:end]) == tokenizer.decode(ids[:end], skip_special_tokens=True)
