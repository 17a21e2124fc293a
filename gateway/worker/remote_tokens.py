"""A local tokenizer for an engine's model, for what the engine does not report itself.

Used only when an engine gives no usage or no per-token logprobs (llama.cpp's server) and to
render the chat template where it ignores ``continue_final_message``. Found from the served
model id when it is a local folder (``vllm --model DIR``), else from the gateway's model setting
(the embedded model: its converted weights' folder, else its GGUF). Loaded lazily, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from gateway.settings import DEFAULT_MODEL

log = structlog.get_logger(__name__)


def load_tokenizer(candidates: Sequence[str | None], data_dir: Path) -> Any | None:
    """The first tokenizer found for ``candidates`` (model ids or folders), or None."""
    from transformers import AutoTokenizer  # heavy import, only when an engine needs it

    for name in candidates:
        if not name:
            continue
        try:
            if Path(name).is_dir() and (Path(name) / "tokenizer_config.json").exists():
                return AutoTokenizer.from_pretrained(name)
            if name == DEFAULT_MODEL:
                cached = sorted((data_dir / "models").glob(f"{DEFAULT_MODEL}-*/tokenizer_config.json"))
                if cached:
                    return AutoTokenizer.from_pretrained(cached[-1].parent)
                from gateway.worker.model import embedded_gguf

                gguf = embedded_gguf()
                return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except (OSError, ValueError) as exc:  # a folder without a usable tokenizer: try the next
            log.warning("tokenizer_not_loaded", source=name, error=str(exc))
    return None


class TokenCounter:
    """Counts tokens of text and renders chat prompts with one lazily loaded tokenizer."""

    def __init__(self, candidates: Sequence[str | None], data_dir: Path) -> None:
        self._candidates = list(candidates)
        self._data_dir = data_dir
        self._tokenizer: Any | None = None
        self._tried = False

    @property
    def tokenizer(self) -> Any | None:
        if not self._tried:
            self._tried = True
            self._tokenizer = load_tokenizer(self._candidates, self._data_dir)
            log.info("remote_tokenizer", found=self._tokenizer is not None, candidates=self._candidates)
        return self._tokenizer

    def ids(self, text: str) -> list[int] | None:
        tok = self.tokenizer
        return None if tok is None else list(tok.encode(text, add_special_tokens=False))

    def render(self, messages: list[dict[str, Any]], *, continue_final: bool) -> str | None:
        """The chat template applied locally (the prompt text a completions endpoint continues)."""
        tok = self.tokenizer
        if tok is None or not getattr(tok, "chat_template", None):
            return None
        return str(
            tok.apply_chat_template(
                messages,
                add_generation_prompt=not continue_final,
                continue_final_message=continue_final,
                tokenize=False,
            )
        )
