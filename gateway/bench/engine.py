"""``stopgate bench engine``: the policy engine's CPU cost per token, per rule family.

Feeds a synthetic token stream (prose with numbers, lists, paragraphs and fenced code; token
pieces of 1-8 characters) through engines holding one rule each, with parameters chosen so
that no rule fires and every token is evaluated, and reports microseconds per token. The
target is <= 20 us per token per rule. No model, no network: it measures the engine alone.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.policy.engine import PolicyEngine
from gateway.policy.rules import (
    AnswerPattern,
    CodeBlocks,
    Confidence,
    LoadBudget,
    Loop,
    Paragraphs,
    Probe,
    Repetition,
    RuleSpec,
    Sentences,
)
from gateway.worker.protocol import ProbeResult, TokenEvent

if TYPE_CHECKING:
    from gateway.settings import Settings

TARGET_US = 20.0
_NEVER = 10**9

#: One spec per family, tuned never to fire on the synthetic stream (cost of evaluation only).
BENCH_RULES: dict[str, RuleSpec] = {
    "answer_pattern": AnswerPattern(pattern=r"####\s*-?[\d,]*\.?\d+", at="line"),
    "sentences": Sentences(max=_NEVER),
    "paragraphs": Paragraphs(max=_NEVER),
    "code_blocks": CodeBlocks(max=_NEVER),
    "repetition": Repetition(ngram=6, max_repeats=_NEVER, window=256),
    "loop": Loop(max_period=128, min_repeats=_NEVER),
    "confidence": Confidence(window=32, min_mean_logprob=-1000.0, at="sentence"),
    "probe": Probe(every=32, agree=_NEVER),
    "load_budget": LoadBudget(queue_depth=_NEVER, max_tokens=64),
}

_WORDS = (  # noqa: SIM905 (a word list reads better as text)
    "the answer is of a to and in that it for with as on by this we can be are which total number cost "
    "price each more than half twice apples students hours minutes miles dollars function return value"
).split()


def synthetic_stream(tokens: int, seed: int = 0) -> list[TokenEvent]:
    """A deterministic stream of ``tokens`` events that looks like a model's answer."""
    rng = random.Random(seed)
    pieces: list[str] = []
    while len(pieces) < tokens:
        kind = rng.random()
        if kind < 0.08:
            pieces += [
                "```",
                "python",
                "\n",
                "def",
                " f",
                "(x",
                "):",
                "\n",
                "   ",
                " return",
                " x",
                " *",
                " 2",
                "\n",
                "```",
                "\n\n",
            ]
        elif kind < 0.2:
            pieces += ["\n\n", f"{rng.randint(1, 9)}", ".", " **", rng.choice(_WORDS).title(), "**", ":"]
        else:
            n = rng.randint(5, 18)
            for i in range(n):
                word = rng.choice(_WORDS) if rng.random() > 0.15 else str(rng.randint(0, 999))
                pieces.append(word.title() if i == 0 else " " + word)
            pieces.append(rng.choice([".", ".", ",", "!", "?", ":"]))
    events = []
    for i, text in enumerate(pieces[:tokens]):
        logprob = -rng.random() * 3.0
        events.append(TokenEvent(i, hash_piece(text, rng), text, logprob, -logprob * 1.5))
    return events


def hash_piece(text: str, rng: random.Random) -> int:
    """A token id: stable per piece text, with variety for numbers and words."""
    return sum(ord(c) * 31**k for k, c in enumerate(text)) % 49152 + rng.randint(0, 1)


def time_engine(rules: Sequence[RuleSpec], streams: list[list[TokenEvent]], rounds: int) -> float:
    """Median microseconds per token over ``rounds`` passes of all streams."""
    probe_answer = 0
    samples = []
    for _ in range(rounds):
        total_tokens = 0
        start = time.perf_counter_ns()
        for events in streams:
            engine = PolicyEngine(rules, max_tokens=len(events) + 1, min_tokens=4)
            for event in events:
                engine.feed(event)
                if engine.pending_probe() is not None:
                    probe_answer += 1  # answers never agree: the probe rule keeps evaluating
                    engine.feed_probe(ProbeResult(text=f" {probe_answer}", tokens=2, confidence=0.99))
            total_tokens += len(events)
        samples.append((time.perf_counter_ns() - start) / 1000 / total_tokens)
    return statistics.median(samples)


@dataclass(frozen=True)
class Options:
    tokens: int = field(default=512, metadata={"help": "tokens per synthetic stream (default 512)"})
    streams: int = field(default=40, metadata={"help": "streams per round (default 40)"})
    rounds: int = field(default=5, metadata={"help": "rounds; the median is reported (default 5)"})
    json: Path | None = field(default=None, metadata={"help": "also write the figures as JSON here"})


def run(options: Options, settings: Settings | None = None) -> int:
    """The engine alone: no model, no settings used."""
    streams = [synthetic_stream(options.tokens, seed) for seed in range(options.streams)]
    base = time_engine([], streams, options.rounds)
    per_rule = {name: time_engine([spec], streams, options.rounds) for name, spec in BENCH_RULES.items()}
    everything = time_engine(list(BENCH_RULES.values()), streams, options.rounds)
    per_rule_all = everything / len(BENCH_RULES)
    worst = max(per_rule.values())
    print(
        f"policy engine cost, {options.streams} x {options.tokens} synthetic tokens, median of {options.rounds} rounds"
    )
    print(f"{'rule':<16}{'us/token':>10}{'over base':>11}")
    print(f"{'(budget only)':<16}{base:>10.2f}{'':>11}")
    for name, cost in per_rule.items():
        print(f"{name:<16}{cost:>10.2f}{cost - base:>11.2f}")
    label = f"all {len(BENCH_RULES)} rules"
    print(f"{label:<16}{everything:>10.2f}{'':>11}  = {per_rule_all:.2f} us/token/rule")
    ok = worst <= TARGET_US and per_rule_all <= TARGET_US
    verdict = "within" if ok else "OVER"
    print(f"worst single rule {worst:.2f} us/token: {verdict} the {TARGET_US:g} us/token/rule target")
    if options.json is not None:
        report = {
            "tokens": options.tokens,
            "streams": options.streams,
            "rounds": options.rounds,
            "target_us": TARGET_US,
            "base_us": base,
            "rules_us": per_rule,
            "all_rules_us": everything,
            "all_rules_us_per_rule": per_rule_all,
            "within_target": ok,
        }
        options.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if ok else 1
