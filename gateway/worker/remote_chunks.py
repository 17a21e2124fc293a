"""Reading an engine's OpenAI stream chunks into ``TokenEvent``s: one event per generated token.

Tokens are the chunk's logprobs entries (chat: ``logprobs.content``; completions:
``logprobs.tokens``); a chunk without logprobs is tokenized locally when a tokenizer is at hand,
else it counts as one token (engines stream one token per chunk). Phases: ``delta.reasoning_content``
and ``delta.reasoning`` (reasoning parsers) are thinking; ``delta.content`` goes through the
inline-marker ``PhaseSplitter``. A token without text (a marker a reasoning parser swallowed, a
token a tool parser buffers) takes the phase of the token before it; leading ones wait for the
first token with text. The end-of-sequence token's entry, which vLLM sends in the finishing
chunk with no text, is not a completion token and gives no event.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from gateway.worker.phases import PhaseSplitter, Piece, ThinkMarkers
from gateway.worker.protocol import Phase, TokenEvent, TopLogprob
from gateway.worker.remote_tokens import TokenCounter


@dataclass(slots=True)
class _Token:
    token_id: int
    logprob: float
    top: tuple[TopLogprob, ...]
    tool_calls: tuple[dict[str, Any], ...] | None = None
    piece: Piece | None = None
    via_splitter: bool = False


def token_id(token: str) -> int:
    """``token_id:N`` (return_tokens_as_token_ids) is N; other token text stands in by a stable hash."""
    if token.startswith("token_id:"):
        with contextlib.suppress(ValueError):
            return int(token[9:])
    return zlib.crc32(token.encode("utf-8"))


def _logprob(value: Any) -> float:
    lp = float(value) if value is not None else 0.0
    return lp if math.isfinite(lp) else -1e4


@dataclass(slots=True)
class _Entry:
    token: str
    logprob: float
    top: tuple[TopLogprob, ...]


def _entries(choice: dict[str, Any], top_k: int) -> list[_Entry]:
    """Logprobs entries of a chat or a completions choice, with at most ``top_k`` alternatives."""
    lp = choice.get("logprobs") or {}
    content = lp.get("content")
    if content is not None:
        return [_Entry(str(e.get("token", "")), _logprob(e.get("logprob")), _alternatives(e, top_k)) for e in content]
    tokens = lp.get("tokens") or []
    lps = lp.get("token_logprobs") or []
    tops = lp.get("top_logprobs") or []
    out = []
    for i, tok in enumerate(tokens):
        alt = tops[i] if i < len(tops) and isinstance(tops[i], dict) and top_k else {}
        ranked = sorted(alt.items(), key=lambda kv: -_logprob(kv[1]))[:top_k]
        out.append(
            _Entry(
                str(tok),
                _logprob(lps[i] if i < len(lps) else None),
                tuple(TopLogprob(t, _logprob(v)) for t, v in ranked),
            )
        )
    return out


def _alternatives(entry: dict[str, Any], top_k: int) -> tuple[TopLogprob, ...]:
    if not top_k:
        return ()
    alts = (entry.get("top_logprobs") or [])[:top_k]
    return tuple(TopLogprob(str(t.get("token", "")), _logprob(t.get("logprob"))) for t in alts)


class ChunkReader:
    """Per-stream state: phase tracking, token indices, and the raw assistant text so far."""

    def __init__(self, markers: ThinkMarkers, *, top_logprobs: int, counter: TokenCounter | None = None) -> None:
        self.markers = markers
        self.splitter = PhaseSplitter(markers)
        self.top_k = top_logprobs
        self.counter = counter
        self.index = 0
        # end-of-sequence tokens with their logprobs entry: counted in the engine's usage, given to no rule
        self.end_events: list[TokenEvent] = []
        self.raw: list[str] = []  # what the engine generated, markers included (what a continuation continues)
        self._queue: deque[_Token] = deque()
        self._phase: Phase | None = None  # phase of the last token with text
        self._reasoning_open = False

    @property
    def raw_text(self) -> str:
        return "".join(self.raw)

    def start_thinking(self, prefix: str) -> None:
        """The request opened the thinking block itself (``prefix``, the start marker): the
        generation starts inside it."""
        self.splitter = PhaseSplitter(self.markers, thinking=True)
        self.raw = [prefix]
        self._phase = "thinking"

    def read(self, choice: dict[str, Any]) -> list[TokenEvent]:
        """The events one chunk's choice completes (some may wait for a split marker to resolve)."""
        fast = self._one_content_token(choice)
        return fast if fast is not None else self._read_any(choice)

    def _one_content_token(self, choice: dict[str, Any]) -> list[TokenEvent] | None:
        """The common chunk, read without the general machinery: one logprobs entry, answer text
        only, nothing waiting. None when the chunk is anything else (``_read_any`` reads it). Gives
        exactly what ``_read_any`` would (tests/unit/worker/test_remote_chunks.py compares them)."""
        delta = choice.get("delta")
        if delta is None or self._queue or self.splitter.pending or self._reasoning_open or len(delta) > 2:
            return None
        content = delta.get("content")
        if not content or type(content) is not str or delta.get("tool_calls") or "reasoning_content" in delta:
            return None
        if len(delta) == 2 and "role" not in delta:
            return None
        logprobs = choice.get("logprobs")
        entries = logprobs.get("content") if type(logprobs) is dict else None
        if type(entries) is not list or len(entries) != 1:
            return None
        entry = entries[0]
        top = _alternatives(entry, self.top_k)
        tok = _Token(token_id(str(entry.get("token", ""))), _logprob(entry.get("logprob")), top, via_splitter=True)
        self.raw.append(content)
        pieces = self.splitter.feed(content)
        self._phase = self.splitter.phase
        if not pieces:  # a possible marker start is held: the token waits for it to resolve
            self._queue.append(tok)
            return []
        piece = pieces[0]
        event = TokenEvent(self.index, tok.token_id, piece.text, tok.logprob, phase=piece.phase, top_logprobs=top)
        self.index += 1
        return [event]

    def _read_any(self, choice: dict[str, Any]) -> list[TokenEvent]:
        delta = choice.get("delta")
        if delta is None:  # completions chunk
            delta = {"content": choice.get("text") or ""}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        content = delta.get("content") or ""
        tool_calls = delta.get("tool_calls")
        entries = _entries(choice, self.top_k)
        finish = choice.get("finish_reason")
        if finish == "stop" and entries and not reasoning and not content and not tool_calls:
            # the end-of-sequence token: the engine counts it in usage, but it is no text
            self.end_events += [
                TokenEvent(self.index, token_id(e.token), "", e.logprob, phase="answer", top_logprobs=e.top)
                for e in entries
            ]
            entries = []
        if not entries:
            if not (reasoning or content or tool_calls):
                return []
            entries = self._local_entries(reasoning + content)
        tokens = [_Token(token_id(e.token), e.logprob, e.top) for e in entries]
        if tool_calls:
            tokens[-1].tool_calls = tuple(tool_calls)
        if reasoning:
            self._thinking(tokens, reasoning, content)
        elif content:
            self._content(tokens, [e.token for e in entries], content)
        elif tool_calls:  # a tool call is the answer
            self._resolve_leading("answer")
            for tok in tokens:
                tok.piece = Piece("answer", "")
                self._queue.append(tok)
            self._phase = "answer"
        else:
            self._blank(tokens)
        return self._ready()

    def finish(self) -> list[TokenEvent]:
        """The stream ended: held marker text is shown, waiting tokens given out."""
        self._assign(self.splitter.finish())
        for tok in self._queue:
            if tok.piece is None:
                tok.piece = Piece(self._phase or "answer", "")
        return self._ready()

    def end_thinking(self, text: str) -> list[TokenEvent]:
        """A forced end: waiting tokens resolve as thinking; ``text`` (the end marker) joins the raw text."""
        self._assign(self.splitter.end_thinking())
        for tok in self._queue:
            if tok.piece is None:
                tok.piece = Piece("thinking", "")
        if self._reasoning_open:
            self._reasoning_open = False
        self.raw.append(text)
        self._phase = "answer"
        return self._ready()

    # -- internals -----------------------------------------------------------------------------

    def _local_entries(self, text: str) -> list[_Entry]:
        ids = self.counter.ids(text) if self.counter is not None else None
        if not ids:
            return [_Entry(text, 0.0, ())]
        return [_Entry(f"token_id:{i}", 0.0, ()) for i in ids]

    def _thinking(self, tokens: list[_Token], reasoning: str, content: str) -> None:
        if self.splitter.pending:
            self._assign(self.splitter.finish())
        if not self._reasoning_open and self.markers.start not in "".join(self.raw):
            self.raw.append(self.markers.start)
        self._reasoning_open = True
        self.raw.append(reasoning)
        if content:  # the chunk that closes the block: the whole chunk counts as thinking
            self.raw.append(self.markers.end + content)
            self._reasoning_open = False
        text = reasoning + content
        for i, tok in enumerate(tokens):
            tok.piece = Piece("thinking", text if i == len(tokens) - 1 else "")
            self._queue.append(tok)
        self._phase = "answer" if content else "thinking"
        self._resolve_leading("thinking")

    def _content(self, tokens: list[_Token], token_texts: list[str], content: str) -> None:
        if self._reasoning_open:  # a reasoning parser moved on to the answer
            self.raw.append(self.markers.end)
            self._reasoning_open = False
        self.raw.append(content)
        per_token = token_texts if len(tokens) > 1 and "".join(token_texts) == content else None
        pieces: list[Piece] = []
        for i, tok in enumerate(tokens):
            tok.via_splitter = True
            self._queue.append(tok)
            text = per_token[i] if per_token else (content if i == len(tokens) - 1 else "")
            pieces += self.splitter.feed(text)
        self._assign(pieces)
        self._phase = self.splitter.phase

    def _blank(self, tokens: list[_Token]) -> None:
        for tok in tokens:
            if self.splitter.pending:
                tok.via_splitter = True
                self._queue.append(tok)
                self._assign(self.splitter.feed(""))
            else:
                tok.piece = Piece(self._phase, "") if self._phase is not None else None
                self._queue.append(tok)

    def _resolve_leading(self, phase: Phase) -> None:
        for tok in self._queue:
            if tok.piece is None and not tok.via_splitter:
                tok.piece = Piece(phase, "")

    def _assign(self, pieces: list[Piece]) -> None:
        if not pieces:
            return
        it = iter(pieces)
        for tok in self._queue:
            if tok.via_splitter and tok.piece is None:
                tok.piece = next(it, None)
                if tok.piece is None:
                    break
        self._resolve_leading(pieces[0].phase)

    def _ready(self) -> list[TokenEvent]:
        out: list[TokenEvent] = []
        while self._queue and self._queue[0].piece is not None:
            tok = self._queue.popleft()
            piece = tok.piece
            assert piece is not None
            out.append(
                TokenEvent(
                    self.index,
                    tok.token_id,
                    piece.text,
                    tok.logprob,
                    phase=piece.phase,
                    top_logprobs=tok.top,
                    tool_calls=tok.tool_calls,
                )
            )
            self.index += 1
        return out
