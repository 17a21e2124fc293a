"""Offline replay of a policy's thinking section over recorded reasoning traces.

A trace is a reasoning model's full thinking plus its final answer (format:
``../shared/data/reasoning/dev.jsonl``). Replaying cuts the thinking where the policy's
``ThinkingEngine`` would have ended it; no model runs, so the answer after a cut is the one the
engine commits to (``ThinkingEngine.answer``: the candidate a convergence rule settled on, else the
last candidate stated before the cut, else None). Probes need a model: offline they are never
answered, as a caller that skips them would. The traces carry no logprobs (0.0 is fed), so
``confidence`` rules see a certain model.

Tokens are the embedded model's (SmolLM2) tokenizer's; each token's text is the slice of the
thinking between its start offset and the next one's, so the pieces partition the text exactly
and a cut after token k keeps ``bounds[k]`` characters.

Grading (EM and agreement) uses ``answer_norm.py`` from beside the traces file when it is there
(the data's own grader), else ``gateway.policy.candidates.answer_key`` equality.
"""

from __future__ import annotations

import bisect
import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import msgspec

from gateway.errors import RequestError
from gateway.policy.answer_keys import answer_key
from gateway.policy.candidates import CandidateTracker
from gateway.policy.thinking import ThinkingEngine, ThinkingSpec
from gateway.worker.protocol import TokenEvent

TOKENIZER_CACHE_VERSION = 1


class Trace(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded reasoning trace (extra fields in the file are ignored)."""

    id: str
    thinking: str
    final_answer: str
    domain: str = "math"
    source: str = ""
    model: str = ""
    gold: list[str] = msgspec.field(default_factory=list)
    query: str = ""


class Tokenized(msgspec.Struct, frozen=True):
    """A trace's thinking as tokens: ids, and ``bounds[i]`` = characters before token i (len + 1)."""

    ids: list[int]
    bounds: list[int]

    @property
    def tokens(self) -> int:
        return len(self.ids)

    def pieces(self, text: str) -> list[str]:
        b = self.bounds
        return [text[b[i] : b[i + 1]] for i in range(len(self.ids))]


class Cut(msgspec.Struct, frozen=True):
    """Where the replayed policy ended a trace's thinking, and the answer it gives."""

    tokens: int  # thinking tokens kept
    chars: int  # thinking characters kept
    answer: str | None
    stop_rule: str | None


class Grader(Protocol):
    name: str

    def equivalent(self, a: str | None, b: str | None) -> bool: ...

    def is_correct(self, pred: str | None, golds: Sequence[str]) -> bool: ...


def load_traces(path: Path) -> list[Trace]:
    """Every line of ``path`` as a ``Trace``; a bad line is a ``RequestError`` naming file and line."""
    traces: list[Trace] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RequestError(f"{path}: cannot read traces: {exc}", param="traces") from exc
    decoder = msgspec.json.Decoder(Trace)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            traces.append(decoder.decode(line))
        except msgspec.DecodeError as exc:
            raise RequestError(f"{path}:{number}: not a reasoning trace: {exc}", param="traces") from exc
    if not traces:
        raise RequestError(f"{path}: no traces", param="traces")
    if len({t.id for t in traces}) != len(traces):
        raise RequestError(f"{path}: trace ids repeat", param="traces")
    return traces


# --- grading --------------------------------------------------------------------------------


class ModuleGrader:
    """The data's own ``answer_norm.py`` (``equivalent``, ``is_correct``)."""

    def __init__(self, module: ModuleType, path: Path) -> None:
        self.name = str(path)
        self._m = module

    def equivalent(self, a: str | None, b: str | None) -> bool:
        return a is not None and b is not None and bool(self._m.equivalent(a, b))

    def is_correct(self, pred: str | None, golds: Sequence[str]) -> bool:
        return bool(self._m.is_correct(pred, list(golds)))


class KeyGrader:
    """Built-in fallback: answers agree when their strict ``answer_key`` (LaTeX presentation removed,
    numbers by value; no unicode or plain-text spellings, like ``answer_norm.py``) is equal."""

    name = "builtin answer_key (strict)"

    def equivalent(self, a: str | None, b: str | None) -> bool:
        if a is None or b is None:
            return False
        key = answer_key(a, lenient=False)
        return bool(key) and key == answer_key(b, lenient=False)

    def is_correct(self, pred: str | None, golds: Sequence[str]) -> bool:
        return any(self.equivalent(pred, g) for g in golds)


def load_grader(traces_path: Path) -> Grader:
    """``answer_norm.py`` beside the traces if present (loaded from that file), else ``KeyGrader``."""
    path = traces_path.resolve().parent / "answer_norm.py"
    if path.is_file():
        spec = importlib.util.spec_from_file_location("stopgate_traces_answer_norm", path)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if callable(getattr(module, "equivalent", None)) and callable(getattr(module, "is_correct", None)):
                return ModuleGrader(module, path)
    return KeyGrader()


# --- tokens ---------------------------------------------------------------------------------

Encoder = Callable[[str], tuple[list[int], list[int]]]
"""text -> (token ids, start offset of each token)."""


def tokenize(text: str, encode: Encoder) -> Tokenized:
    ids, starts = encode(text)
    bounds = [0]
    for start in starts[1:]:
        bounds.append(min(len(text), max(bounds[-1], start)))  # byte pieces of one character share it
    bounds.append(len(text))
    return Tokenized(ids=list(ids), bounds=bounds[: len(ids) + 1] if ids else [0])


def embedded_encoder(data_dir: Path) -> Encoder:
    """The embedded model's tokenizer as an ``Encoder``, from a cached ``tokenizer.json``.

    The first use converts the tokenizer out of the GGUF (in the worker package, ~20 s; the weights
    are not loaded) and saves it under ``<data_dir>/tokenizers/``; later uses load the JSON with
    the ``tokenizers`` library alone (well under a second).
    """
    from tokenizers import Tokenizer

    from gateway.worker.model import embedded_tokenizer_file

    cached = embedded_tokenizer_file(data_dir, TOKENIZER_CACHE_VERSION)
    tok = Tokenizer.from_file(str(cached))

    def encode(text: str) -> tuple[list[int], list[int]]:
        enc = tok.encode(text, add_special_tokens=False)
        return list(enc.ids), [start for start, _ in enc.offsets]

    return encode


# --- replay ---------------------------------------------------------------------------------


def replay_trace(trace: Trace, tokens: Tokenized, spec: ThinkingSpec | None) -> Cut:
    """The policy's cut of one trace's thinking; an uncut trace keeps its own final answer."""
    full = Cut(tokens.tokens, len(trace.thinking), trace.final_answer, None)
    if spec is None:
        return full
    engine = ThinkingEngine.for_request(spec, question=trace.query, track_answer=True)
    if not engine.allows_thinking:
        return Cut(0, 0, None, "max_tokens")  # thinking off: nothing of the trace is kept
    for i, piece in enumerate(tokens.pieces(trace.thinking)):
        decision = engine.feed(TokenEvent(i, tokens.ids[i], piece, 0.0, phase="thinking"))
        if decision.stop:
            kept = i + 1
            if kept >= tokens.tokens:  # the model ends its thinking here anyway
                return Cut(kept, len(trace.thinking), trace.final_answer, decision.rule)
            chars = tokens.bounds[kept]
            answer = engine.answer
            if answer is not None and answer not in trace.thinking[:chars]:
                answer = None  # a committed answer must be in what was kept
            return Cut(kept, chars, answer, decision.rule)
    return full


class CandidateIndex:
    """Every candidate of a trace with the number of tokens after which it was complete, for
    answering "the last candidate within the first B tokens" for any budget B in O(log n)."""

    def __init__(self, trace: Trace, tokens: Tokenized) -> None:
        tracker = CandidateTracker()
        self.ends: list[int] = []
        self.texts: list[str] = []
        for i, piece in enumerate(tokens.pieces(trace.thinking)):
            if tracker.feed(piece):
                for c in tracker.candidates[len(self.texts) :]:
                    self.ends.append(i + 1)
                    self.texts.append(c.text)

    def last_within(self, budget: int) -> str | None:
        k = bisect.bisect_right(self.ends, budget)
        return self.texts[k - 1] if k else None


def static_cut(trace: Trace, tokens: Tokenized, index: CandidateIndex, budget: int) -> Cut:
    """One global thinking budget: the first ``budget`` tokens, answer = last candidate in them."""
    if tokens.tokens <= budget:
        return Cut(tokens.tokens, len(trace.thinking), trace.final_answer, None)
    return Cut(budget, tokens.bounds[budget], index.last_within(budget), "max_tokens")


def budget_matching(token_counts: Sequence[int], target: int) -> int:
    """The global budget whose total kept tokens comes closest to ``target`` (ties: the smaller)."""

    def total(b: int) -> int:
        return sum(min(n, b) for n in token_counts)

    lo, hi = 0, max(token_counts, default=0)
    while lo < hi:  # smallest b with total(b) >= target
        mid = (lo + hi) // 2
        if total(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    below = max(0, lo - 1)
    return below if abs(total(below) - target) <= abs(total(lo) - target) else lo


def figures(traces: Sequence[Trace], full: Sequence[int], cuts: Sequence[Cut], grader: Grader) -> dict[str, Any]:
    """items, thinking tokens full/policy, saved %, agreement and EM (full and policy)."""
    n = len(traces)
    tokens_full = sum(full)
    tokens_policy = sum(c.tokens for c in cuts)
    agree = sum(grader.equivalent(c.answer, t.final_answer) for t, c in zip(traces, cuts, strict=True))
    em_full = sum(grader.is_correct(t.final_answer, t.gold) for t in traces)
    em_policy = sum(grader.is_correct(c.answer, t.gold) for t, c in zip(traces, cuts, strict=True))
    return {
        "items": n,
        "tokens_thinking_full": tokens_full,
        "tokens_thinking_policy": tokens_policy,
        "saved_pct": round(100 * (1 - tokens_policy / tokens_full), 2) if tokens_full else 0.0,
        "agreement": round(agree / n, 4) if n else None,
        "em_full": round(em_full / n, 4) if n else None,
        "em_policy": round(em_policy / n, 4) if n else None,
    }


def item_line(trace: Trace, tokens: Tokenized, cut: Cut) -> dict[str, Any]:
    """One ``--items-out`` line (DESIGN.md)."""
    return {
        "id": trace.id,
        "tokens_thinking_full": tokens.tokens,
        "tokens_thinking_policy": cut.tokens,
        "chars_thinking_policy": cut.chars,
        "answer_full": trace.final_answer,
        "answer_policy": cut.answer,
        "stop_rule": cut.stop_rule,
    }


def source_of(trace: Trace) -> str:
    """The row label of a trace in per-source tables: its model, else its source file."""
    return trace.model or trace.source or "(unknown)"


def dumps_lines(lines: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
