"""Splitting a token stream into its thinking and answer phases by inline markers.

``PhaseSplitter`` is fed the text of each generated token, in order, and gives back one
``Piece`` per token: its phase and the text to show, markers removed. It is pure (no I/O, no
clock) and cheap on the common path: a token whose text holds no marker character, with nothing
held back, is answered at once.

Rules (the unit specs in tests/unit/worker/test_phases.py pin each):
- Markers default to ``<think>`` / ``</think>``; any pair of distinct non-empty strings works.
- A marker may be split across any number of tokens. Text that might be the start of a marker
  is held back until it is resolved: the token that holds it (and the tokens after it) get
  their ``Piece`` once the marker completes or fails, so ``feed`` returns zero or more pieces,
  always in feed order, and ``finish`` returns the rest. Held text that turns out not to be a
  marker is shown with the token it came from.
- Exactly one piece per token. A token that carries any character of a marker is ``thinking``
  (a marker-only token shows empty text); other tokens take the phase they were generated in.
  So nothing of the thinking ever shows in the answer; at worst a token's answer text glued to
  a marker shows in the thinking.
- Markers toggle, they do not nest: a start marker opens thinking (inside thinking it is
  removed and changes nothing), an end marker closes it (outside thinking: removed, no effect).
  Thinking may open again later (interleaved blocks).
- Text before a start marker is answer text (or thinking, when the splitter starts in thinking
  because the prompt opened the block). No end marker: the rest of the stream stays thinking.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.worker.protocol import Phase

DEFAULT_MARKERS = ("<think>", "</think>")


@dataclass(frozen=True, slots=True)
class Piece:
    """One token's phase and the text it shows (markers removed)."""

    phase: Phase
    text: str


@dataclass(frozen=True, slots=True)
class ThinkMarkers:
    start: str = DEFAULT_MARKERS[0]
    end: str = DEFAULT_MARKERS[1]

    def __post_init__(self) -> None:
        if not self.start or not self.end or self.start == self.end:
            raise ValueError("thinking markers must be two distinct non-empty strings")

    @classmethod
    def parse(cls, value: str | Sequence[str]) -> ThinkMarkers:
        """``"<think>,</think>"`` or a two-item sequence (the setting ``STOPGATE_THINK_MARKERS``)."""
        parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else [p.strip() for p in value]
        if len(parts) != 2:
            raise ValueError(f"thinking markers are a start and an end marker, got {list(parts)!r}")
        return cls(parts[0], parts[1])


class _Slot:
    """A fed token whose piece is not given out yet."""

    __slots__ = ("marker", "phase", "text")

    def __init__(self, phase: Phase) -> None:
        self.phase: Phase = phase
        self.text = ""
        self.marker = False

    def piece(self) -> Piece:
        return Piece("thinking" if self.marker else self.phase, self.text)


class PhaseSplitter:
    """Labels each token of one generation ``thinking`` or ``answer``; see the module rules."""

    def __init__(self, markers: ThinkMarkers | None = None, *, thinking: bool = False) -> None:
        self.markers = markers or ThinkMarkers()
        self._phase: Phase = "thinking" if thinking else "answer"
        self._firsts = frozenset((self.markers.start[0], self.markers.end[0]))
        self._longest = max(len(self.markers.start), len(self.markers.end))
        self._slots: deque[_Slot] = deque()  # fed, not given out: all of them own held text or follow it
        self._held: list[tuple[_Slot, str]] = []  # a possible marker start, split by owning token
        self.thinking_tokens = 0
        self.answer_tokens = 0

    @property
    def phase(self) -> Phase:
        """The phase the next token's text is in."""
        return self._phase

    @property
    def pending(self) -> int:
        """Tokens fed whose piece is still held back."""
        return len(self._slots)

    def feed(self, text: str) -> list[Piece]:
        """One token's text; returns the pieces now resolved (this token's or earlier ones')."""
        if not self._held and not any(c in text for c in self._firsts):
            return [self._count(Piece(self._phase, text))]
        slot = _Slot(self._phase)
        self._slots.append(slot)
        spans = [*self._held, (slot, text)]
        self._held = []
        self._scan(spans)
        return self._resolved()

    def finish(self) -> list[Piece]:
        """The stream ended: held text is shown as it is, every remaining token resolved."""
        self._show_held()
        return self._resolved()

    def end_thinking(self) -> list[Piece]:
        """A forced end of thinking (the caller appends the end marker): held text is shown as
        thinking, the pending tokens resolved, and what follows is answer."""
        self._show_held()
        out = self._resolved()
        self._phase = "answer"
        return out

    # -- internals -----------------------------------------------------------------------------

    def _count(self, piece: Piece) -> Piece:
        if piece.phase == "thinking":
            self.thinking_tokens += 1
        else:
            self.answer_tokens += 1
        return piece

    def _show_held(self) -> None:
        for slot, part in self._held:
            slot.text += part
            slot.phase = self._phase
        self._held = []

    def _resolved(self) -> list[Piece]:
        held = {id(slot) for slot, _ in self._held}
        out: list[Piece] = []
        while self._slots and id(self._slots[0]) not in held:
            out.append(self._count(self._slots.popleft().piece()))
        return out

    def _scan(self, spans: list[tuple[_Slot, str]]) -> None:
        """Find markers in held + new text; show what is not marker; hold a possible marker start."""
        s = "".join(part for _, part in spans)
        owners: list[tuple[_Slot, int, int]] = []
        at = 0
        for slot, part in spans:
            owners.append((slot, at, at + len(part)))
            at += len(part)
        start, end = self.markers.start, self.markers.end
        pos = 0
        while True:
            i_start, i_end = s.find(start, pos), s.find(end, pos)
            if i_start < 0 and i_end < 0:
                break
            if i_end < 0 or (0 <= i_start < i_end):
                i, marker, phase = i_start, start, "thinking"
            else:
                i, marker, phase = i_end, end, "answer"
            self._show(s, owners, pos, i)
            for slot, a, b in owners:
                if a < i + len(marker) and b > i:
                    slot.marker = True
            self._phase = phase  # type: ignore[assignment]
            pos = i + len(marker)
        keep = self._tail_prefix(s, pos)
        cut = len(s) - keep
        self._show(s, owners, pos, cut)
        if keep:
            self._held = [(slot, s[max(a, cut) : b]) for slot, a, b in owners if b > cut and b > a]

    def _show(self, s: str, owners: list[tuple[_Slot, int, int]], lo: int, hi: int) -> None:
        if hi <= lo:
            return
        for slot, a, b in owners:
            if a < hi and b > lo:
                slot.text += s[max(a, lo) : min(b, hi)]
                slot.phase = self._phase

    def _tail_prefix(self, s: str, pos: int) -> int:
        """Length of the longest end of ``s[pos:]`` that is a proper start of a marker."""
        rest = len(s) - pos
        for k in range(min(rest, self._longest - 1), 0, -1):
            tail = s[len(s) - k :]
            if self.markers.start.startswith(tail) or self.markers.end.startswith(tail):
                return k
        return 0


def split_all(texts: Sequence[str], markers: ThinkMarkers | None = None, *, thinking: bool = False) -> list[Piece]:
    """The pieces of a whole token sequence (for tests, replays and non-streaming callers)."""
    splitter = PhaseSplitter(markers, thinking=thinking)
    out = [p for t in texts for p in splitter.feed(t)]
    return out + splitter.finish()
