"""Client ``stop`` sequences over a stream of text deltas.

Text that could still turn into a stop sequence is held back, so the client never sees a
partial stop string; the stop string itself is never sent (OpenAI semantics).
"""

from __future__ import annotations


class StopStringMatcher:
    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._buffer = ""
        self.matched = False

    def push(self, text: str) -> str:
        """Feed a delta; return the text that is safe to send now."""
        if not self._stops:
            return text
        self._buffer += text
        cut = min((i for i in (self._buffer.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.matched = True
            out, self._buffer = self._buffer[:cut], ""
            return out
        if len(self._buffer) <= self._hold:
            return ""
        out, self._buffer = (
            self._buffer[: len(self._buffer) - self._hold],
            self._buffer[len(self._buffer) - self._hold :],
        )
        return out

    def flush(self) -> str:
        out, self._buffer = ("" if self.matched else self._buffer), ""
        return out
