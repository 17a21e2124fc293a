"""``stopgate bench reasoning``: thinking tokens saved vs answers kept, on recorded reasoning traces.

Each trace's domain policy (its ``thinking`` section: rules and budget) is replayed offline over the
trace's thinking (``gateway.offline.reasoning``), tokens counted with the embedded model's
tokenizer. Reported overall and per source (the model that wrote the traces): thinking tokens full
vs policy, % saved, agreement of the committed answer with the trace's own final answer, EM against
gold; plus the static-budget baseline: the one global thinking budget with the same total thinking
tokens. Formats: DESIGN.md, "Reasoning models".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.bench.engine import TARGET_US
from gateway.classify.definitions import load_domains
from gateway.cli.common import add_settings_flags, settings_from_args
from gateway.offline.reasoning import (
    CandidateIndex,
    Cut,
    Grader,
    Tokenized,
    Trace,
    budget_matching,
    dumps_lines,
    embedded_encoder,
    figures,
    item_line,
    load_grader,
    load_traces,
    replay_trace,
    source_of,
    static_cut,
    tokenize,
)
from gateway.policy.loader import load_policies_dir
from gateway.policy.rules import AnswerConvergence, Loop, Probe, Repetition, RuleSpec
from gateway.policy.schema import DEFAULT_DOMAIN, Policy
from gateway.policy.thinking import ThinkingEngine, ThinkingSpec
from gateway.worker.protocol import ProbeResult, TokenEvent

CURVE_POINTS = 24  # static budgets drawn on the plot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--traces", type=Path, required=True, help="JSON lines: id, domain, thinking, final_answer, gold"
    )
    parser.add_argument("--json", type=Path, required=True, help="write the report here")
    parser.add_argument("--items-out", type=Path, required=True, help="write one JSON line per trace here")
    parser.add_argument("--markdown", type=Path, default=None, help="write Markdown tables (overall, per source) here")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot (thinking saved vs agreement) here")
    parser.add_argument(
        "--cost", action="store_true", help="also time the thinking engine per token and rule (report key: cost)"
    )
    add_settings_flags(parser, only=("domains_dir", "policies_dir", "data_dir"))


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    started = time.perf_counter()
    traces = load_traces(args.traces)
    names = load_domains(Path(settings.domains_dir)).names
    policies = load_policies_dir(settings.policies_dir, names)
    encode = embedded_encoder(Path(settings.data_dir))
    tokens = [tokenize(t.thinking, encode) for t in traces]
    grader = load_grader(args.traces)
    report, lines = measure(traces, tokens, policies, grader)
    if args.cost:
        report["cost"] = thinking_cost(traces, tokens)
    report["run"] = {
        "traces": str(args.traces),
        "grader": grader.name,
        "tokenizer": "embedded model (SmolLM2-135M)",
        "policies": {name: p.version for name, p in sorted(policies.items())},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    _write(args.json, json.dumps(report, indent=2) + "\n")
    _write(args.items_out, dumps_lines(lines))
    if args.markdown is not None:
        _write(args.markdown, markdown(report))
    if args.plot is not None:
        plot(report, args.plot)
    _summary(report)
    return 0


def policy_for(policies: Mapping[str, Policy], domain: str) -> Policy:
    return policies.get(domain) or policies[DEFAULT_DOMAIN]


def measure(
    traces: Sequence[Trace], tokens: Sequence[Tokenized], policies: Mapping[str, Policy], grader: Grader
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The report (DESIGN.md's JSON plus per-source figures and a static curve) and the item lines."""
    cuts = [
        replay_trace(t, tok, policy_for(policies, t.domain).thinking) for t, tok in zip(traces, tokens, strict=True)
    ]
    full = [tok.tokens for tok in tokens]
    overall = figures(traces, full, cuts, grader)
    indexes = [CandidateIndex(t, tok) for t, tok in zip(traces, tokens, strict=True)]

    def static(budget: int) -> list[Cut]:
        return [static_cut(t, tok, ix, budget) for t, tok, ix in zip(traces, tokens, indexes, strict=True)]

    budget = budget_matching(full, overall["tokens_thinking_policy"])
    static_cuts = static(budget)
    st = figures(traces, full, static_cuts, grader)
    sources: dict[str, dict[str, Any]] = {}
    for name in sorted({source_of(t) for t in traces}):
        pick = [i for i, t in enumerate(traces) if source_of(t) == name]
        mine = figures([traces[i] for i in pick], [full[i] for i in pick], [cuts[i] for i in pick], grader)
        theirs = figures([traces[i] for i in pick], [full[i] for i in pick], [static_cuts[i] for i in pick], grader)
        sources[name] = {**mine, "static_saved_pct": theirs["saved_pct"], "static_agreement": theirs["agreement"]}
    rules: dict[str, int] = {}
    for c in cuts:
        key = c.stop_rule or "(uncut)"
        rules[key] = rules.get(key, 0) + 1
    top = max(full, default=1)
    curve = []
    for k in range(1, CURVE_POINTS + 1):
        b = round(top * (k / CURVE_POINTS) ** 2)
        f = figures(traces, full, static(b), grader)
        curve.append({"max_tokens": b, "saved_pct": f["saved_pct"], "agreement": f["agreement"], "em": f["em_policy"]})
    report = {
        "overall": overall,
        "baselines": {
            "static_budget": {
                "max_tokens": budget,
                "tokens": st["tokens_thinking_policy"],
                "saved_pct": st["saved_pct"],
                "agreement": st["agreement"],
                "em": st["em_policy"],
            }
        },
        "sources": sources,
        "stop_rules": dict(sorted(rules.items())),
        "static_curve": curve,
    }
    lines = [item_line(t, tok, c) for t, tok, c in zip(traces, tokens, cuts, strict=True)]
    return report, lines


def _pct(value: Any) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _frac(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"


def markdown(report: Mapping[str, Any]) -> str:
    ov, st = report["overall"], report["baselines"]["static_budget"]
    lines = [
        "# Thinking phase: tokens saved vs answers kept",
        "",
        f"{ov['items']} traces; static budget: one global thinking budget of {st['max_tokens']} tokens "
        "with the same total thinking tokens.",
        "",
        "| | thinking tokens | saved | agreement | EM |",
        "|---|---|---|---|---|",
        f"| full thinking | {ov['tokens_thinking_full']} | 0.0% | 1.000 | {_frac(ov['em_full'])} |",
        f"| policy | {ov['tokens_thinking_policy']} | {_pct(ov['saved_pct'])} | {_frac(ov['agreement'])} "
        f"| {_frac(ov['em_policy'])} |",
        f"| static budget ({st['max_tokens']}) | {st['tokens']} | {_pct(st['saved_pct'])} | {_frac(st['agreement'])} "
        f"| {_frac(st['em'])} |",
        "",
        "## Per source",
        "",
        "| source | traces | thinking full | policy | saved | agreement | EM full | EM policy | static saved "
        "| static agreement |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["sources"].items():
        lines.append(
            f"| {name} | {s['items']} | {s['tokens_thinking_full']} | {s['tokens_thinking_policy']} "
            f"| {_pct(s['saved_pct'])} | {_frac(s['agreement'])} | {_frac(s['em_full'])} | {_frac(s['em_policy'])} "
            f"| {_pct(s['static_saved_pct'])} | {_frac(s['static_agreement'])} |"
        )
    lines += ["", "Stop rules: " + ", ".join(f"{k} {v}" for k, v in report["stop_rules"].items())]
    return "\n".join(lines) + "\n"


def plot(report: Mapping[str, Any], path: Path) -> None:
    """PNG: thinking tokens saved vs agreement; the policy (overall and per source) vs static budgets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ov, st = report["overall"], report["baselines"]["static_budget"]
    curve = report["static_curve"]
    fig, ax = plt.subplots(figsize=(7, 4.8))
    ax.plot([c["saved_pct"] for c in curve], [c["agreement"] for c in curve], "-", color="tab:red", alpha=0.5)
    ax.scatter([0.0], [1.0], color="black", label="full thinking")
    ax.scatter([st["saved_pct"]], [st["agreement"]], color="tab:red", marker="s", s=60,
               label=f"static budget {st['max_tokens']} (equal tokens); line: other budgets")  # fmt: skip
    ax.scatter([ov["saved_pct"]], [ov["agreement"]], color="tab:green", marker="*", s=160, label="policy")
    for k, (name, s) in enumerate(report["sources"].items()):
        ax.scatter([s["saved_pct"]], [s["agreement"]], color="tab:green", marker="v", s=40, alpha=0.6)
        label = name.split("/")[-1].removeprefix("DeepSeek-R1-Distill-")[:24]
        ax.annotate(label, (s["saved_pct"], s["agreement"]), fontsize=7, xytext=(4, -10 - 9 * k),
                    textcoords="offset points", arrowprops={"arrowstyle": "-", "alpha": 0.3})  # fmt: skip
    ax.set_xlabel("thinking tokens saved (%)")
    ax.set_ylabel("agreement with the full trace's answer")
    ax.set_xlim(-5, 100)
    ax.set_ylim(-0.02, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(f"thinking phase, {ov['items']} traces")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
