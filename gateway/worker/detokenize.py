"""Incremental detokenization: the text each new token adds, correct across multi-byte characters.

Byte-level BPE splits one character over several tokens and merges spaces into tokens, so
decoding tokens one by one is wrong. We decode a short window before and after the new token
and emit the difference, holding text back while it ends in an incomplete character (U+FFFD).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

CONTEXT_IDS = 4
"""Ids kept before a restart: enough to hold any character a byte-level BPE splits."""


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any) -> None:
        self._decode = _decoder(tokenizer)
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""

    def restart(self, context: list[int]) -> None:
        """Continue after ``context`` (the ids now before the next token), as already shown.

        After tokens are taken back and others appended (a forced end of thinking), the next
        token's text is its difference to the last few context ids, so spacing stays right."""
        self._ids = list(context[-CONTEXT_IDS:])
        self._prefix, self._read = 0, len(self._ids)


class TokenTexts:
    """The text of single token ids (top-logprob alternatives), decoded once per id."""

    def __init__(self, tokenizer: Any) -> None:
        self._decode = _decoder(tokenizer)
        self._texts: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self._texts.get(token_id)
        if text is None:
            text = self._texts[token_id] = self._decode([token_id])
        return text


def _decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    """``tokenizer.decode(ids, skip_special_tokens=True)``, as cheaply as it can be had.

    Two decodes per token per row: through transformers each pays ~7 us of Python around the
    Rust call (~0.7 us). A fast tokenizer with no clean-up pass returns exactly the Rust tokenizer's
    text, so that is called directly; any other tokenizer goes through ``decode``.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and getattr(tokenizer, "clean_up_tokenization_spaces", True) is False:
        return functools.partial(backend.decode, skip_special_tokens=True)
    return functools.partial(tokenizer.decode, skip_special_tokens=True)
