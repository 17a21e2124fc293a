"""A scripted stand-in for the ``Worker`` protocol: streams fixed token events, records what it was asked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from gateway.worker.protocol import ChatMessage, Phase, ProbeResult, SamplingParams, TokenEvent, TokenStream


def events(texts: Sequence[str], phase: Phase = "answer", start: int = 0) -> list[TokenEvent]:
    return [TokenEvent(start + i, 100 + start + i, t, -0.1, phase=phase) for i, t in enumerate(texts)]


class ScriptedStream:
    def __init__(
        self,
        script: list[TokenEvent],
        after_end: list[TokenEvent],
        finish: str,
        once: bool = False,
        end_events: Sequence[TokenEvent] = (),
        end_error: Exception | None = None,
    ) -> None:
        self.prompt_tokens = 7
        self.cached_tokens = 0
        self.end_events = list(end_events)  # like a remote engine's EOS entries: counted, no text
        self._end_error = end_error  # raised once the script is read (an engine failing at the end)
        self._once = once  # like a remote stream's HTTP response: a second iteration cannot read on
        self._iterated = False
        self.finish_reason: str | None = None
        self._script = list(script)
        self._after_end = after_end
        self._finish = finish
        self.cancelled = False
        self.ended_thinking_with: str | None = None

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        if self._once and self._iterated:
            raise RuntimeError("this stream was already read")
        self._iterated = True
        while self._script and not self.cancelled:
            yield self._script.pop(0)
        if self._end_error is not None and not self.cancelled:
            raise self._end_error
        self.finish_reason = "cancelled" if self.cancelled else self._finish

    def cancel(self) -> None:
        self.cancelled = True

    def end_thinking(self, text: str) -> None:
        self.ended_thinking_with = text
        self._script = list(self._after_end)


@dataclass
class ScriptedWorker:
    """``script``: the events of the generation; ``after_end``: what follows a forced end of thinking."""

    script: list[TokenEvent]
    after_end: list[TokenEvent] = field(default_factory=list)
    finish: str = "stop"
    once: bool = False
    end_events: list[TokenEvent] = field(default_factory=list)
    overrun: int = 0  # tokens sent beyond the budget asked for (a misbehaving engine)
    end_error: Exception | None = None
    probe_answer: str = "42"
    model_id: str = "scripted"
    context_length: int = 4096
    ready: bool = True
    queue_depth: int = 0
    active: int = 0
    tokens_generated: int = 0
    params: SamplingParams | None = None
    streams: list[ScriptedStream] = field(default_factory=list)

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream:
        self.params = params
        stream = ScriptedStream(
            self.script[: params.max_tokens + self.overrun],
            self.after_end,
            self.finish,
            self.once,
            self.end_events,
            self.end_error,
        )
        self.streams.append(stream)
        return stream

    async def probe(self, stream: TokenStream, suffix: str, max_tokens: int) -> ProbeResult:
        return ProbeResult(self.probe_answer, 1, 0.99)

    async def end_thinking(self, stream: TokenStream, text: str) -> int:
        assert isinstance(stream, ScriptedStream)
        stream.end_thinking(text)
        return 3  # as if the marker took three tokens
