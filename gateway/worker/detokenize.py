"""Incremental detokenization: the text each new token adds, correct across multi-byte characters.

Byte-level BPE splits one character over several tokens and merges spaces into tokens, so
decoding tokens one by one is wrong. We decode a short window before and after the new token
and emit the difference, holding text back while it ends in an incomplete character (U+FFFD).
"""

from __future__ import annotations

from typing import Any


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, prompt_tail: list[int] | None = None) -> None:
        self._tok = tokenizer
        # Seed with the prompt's last tokens so the first token's leading space decodes right.
        self._ids: list[int] = list(prompt_tail or [])
        self._prefix = 0
        self._read = len(self._ids)

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = self._tok.decode(self._ids[self._prefix : self._read], skip_special_tokens=True)
        after = self._tok.decode(self._ids[self._prefix :], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""
