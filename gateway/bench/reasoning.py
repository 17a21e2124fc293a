"""``stopgate bench reasoning``: thinking tokens saved vs answers kept, on recorded reasoning traces.

Each trace's domain policy (its ``thinking`` section: rules and budget) is replayed offline over the
trace's thinking (``gateway.offline.reasoning``), tokens counted with the embedded model's
tokenizer. Reported overall and per source (the model that wrote the traces): thinking tokens full
vs policy, % saved, agreement of the committed answer with the trace's own final answer, EM against
gold; plus the static-budget baseline: the one global thinking budget with the same total thinking
tokens (``gateway.offline.reasoning_report``). Formats: DESIGN.md, "Reasoning models".
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.bench.engine import TARGET_US
from gateway.classify.definitions import load_domains
from gateway.offline.reasoning import (
    Tokenized,
    Trace,
    dumps_lines,
    embedded_encoder,
    load_grader,
    load_traces,
    tokenize,
)
from gateway.offline.reasoning_report import markdown, measure, plot
from gateway.policy.loader import load_policies_dir
from gateway.policy.rules import AnswerConvergence, Loop, Probe, Repetition, RuleSpec
from gateway.policy.thinking import ThinkingEngine, ThinkingSpec
from gateway.settings import Settings
from gateway.worker.protocol import ProbeResult, TokenEvent

SETTINGS = ("domains_dir", "policies_dir", "data_dir")


@dataclass(frozen=True)
class Options:
    traces: Path = field(metadata={"help": "JSON lines: id, domain, thinking, final_answer, gold"})
    json: Path = field(metadata={"help": "write the report here"})
    items_out: Path = field(metadata={"help": "write one JSON line per trace here"})
    markdown: Path | None = field(default=None, metadata={"help": "write Markdown tables (overall, per source) here"})
    plot: Path | None = field(default=None, metadata={"help": "write a PNG plot (thinking saved vs agreement) here"})
    cost: bool = field(
        default=False, metadata={"help": "also time the thinking engine per token and rule (report key: cost)"}
    )


def run(options: Options, settings: Settings) -> int:
    started = time.perf_counter()
    traces = load_traces(options.traces)
    names = load_domains(Path(settings.domains_dir)).names
    policies = load_policies_dir(settings.policies_dir, names)
    encode = embedded_encoder(Path(settings.data_dir))
    tokens = [tokenize(t.thinking, encode) for t in traces]
    grader = load_grader(options.traces)
    report, lines = measure(traces, tokens, policies, grader)
    if options.cost:
        report["cost"] = thinking_cost(traces, tokens)
    report["run"] = {
        "traces": str(options.traces),
        "grader": grader.name,
        "tokenizer": "embedded model (SmolLM2-135M)",
        "policies": {name: p.version for name, p in sorted(policies.items())},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    _write(options.json, json.dumps(report, indent=2) + "\n")
    _write(options.items_out, dumps_lines(lines))
    if options.markdown is not None:
        _write(options.markdown, markdown(report))
    if options.plot is not None:
        plot(report, options.plot)
    _summary(report)
    return 0


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _summary(report: Mapping[str, Any]) -> None:
    ov, st = report["overall"], report["baselines"]["static_budget"]
    if "cost" in report:
        c = report["cost"]
        rules = ", ".join(f"{k} {v:.2f}" for k, v in c["rules_us"].items())
        print(
            f"cost per thinking token ({c['tokens']} tokens): phase split {c['phase_split_us']:.2f} us, "
            f"engine: budget {c['budget_only_us']:.2f} us, + answer candidates {c['answer_tracking_us']:.2f} us; "
            f"one rule each: {rules} us "
            f"({'within' if c['within_target'] else 'OVER'} {c['target_us']:g} us/token/rule)",
            file=sys.stderr,
        )
    print(
        f"thinking: {ov['items']} traces, {ov['tokens_thinking_full']} -> {ov['tokens_thinking_policy']} tokens "
        f"({ov['saved_pct']:.1f}% saved), agreement {ov['agreement']:.3f}, EM {ov['em_full']:.3f} -> "
        f"{ov['em_policy']:.3f}; static budget {st['max_tokens']}: agreement {st['agreement']:.3f}, EM {st['em']:.3f}",
        file=sys.stderr,
    )


#: One spec per thinking rule family, set never to fire: the cost of evaluating every token.
COST_RULES: dict[str, RuleSpec] = {
    "loop": Loop(max_period=128, min_repeats=10**9),
    "repetition": Repetition(ngram=6, max_repeats=10**9, window=256),
    "answer_convergence": AnswerConvergence(agree=10**6, conclusion=1),
    "probe": Probe(every=32, agree=10**9, answer="boxed"),
}
COST_TOKENS_PER_TRACE = 3000


def thinking_cost(traces: Sequence[Trace], tokens: Sequence[Tokenized], rounds: int = 3) -> dict[str, Any]:
    """Microseconds per thinking token (median of ``rounds``) of the phase splitter, the thinking
    engine with its budget only, with answer candidates tracked, and with one rule of each family."""
    from gateway.worker.phases import PhaseSplitter

    streams = [
        [
            TokenEvent(i, ids, piece, 0.0, phase="thinking")
            for i, (ids, piece) in enumerate(zip(tok.ids, tok.pieces(t.thinking), strict=True))
        ][:COST_TOKENS_PER_TRACE]
        for t, tok in zip(traces, tokens, strict=True)
    ]
    total = sum(len(s) for s in streams)

    def timed(fn: Callable[[list[TokenEvent], str], None]) -> float:
        samples = []
        for _ in range(rounds):
            start = time.perf_counter_ns()
            for t, events in zip(traces, streams, strict=True):
                fn(events, t.query)
            samples.append((time.perf_counter_ns() - start) / 1000 / total)
        return round(statistics.median(samples), 2)

    def split(events: list[TokenEvent], _q: str) -> None:
        splitter = PhaseSplitter(thinking=True)
        for e in events:
            splitter.feed(e.text)

    def engine_with(rules: tuple[RuleSpec, ...], track: bool = False) -> Callable[[list[TokenEvent], str], None]:
        spec = ThinkingSpec(rules=rules)

        def go(events: list[TokenEvent], q: str) -> None:
            engine = ThinkingEngine(spec, budget=len(events) + 1, question=q, track_answer=track)
            for e in events:
                engine.feed(e)
                if engine.pending_probe() is not None:
                    engine.feed_probe(ProbeResult(f"{e.index}}}", 2, 0.99))

        return go

    out: dict[str, Any] = {"tokens": total, "rounds": rounds, "target_us": TARGET_US}
    out["phase_split_us"] = timed(split)
    out["budget_only_us"] = timed(engine_with(()))
    out["answer_tracking_us"] = timed(engine_with((), track=True))  # offline replays: candidates scanned
    out["rules_us"] = {name: timed(engine_with((spec,))) for name, spec in COST_RULES.items()}
    out["within_target"] = (
        max([out["phase_split_us"], out["answer_tracking_us"], *out["rules_us"].values()]) <= TARGET_US
    )
    return out
