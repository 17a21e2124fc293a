"""The reasoning report: thinking tokens saved vs answers kept, as DESIGN.md's JSON, Markdown and a PNG.

``measure`` replays each trace's domain policy (its ``thinking`` section) over the trace
(``gateway.offline.reasoning``) and reports the figures overall and per source (the model that wrote
the traces), against the static-budget baseline: the one global thinking budget with the same total
thinking tokens, plus a curve of other static budgets. Formats: DESIGN.md, "Reasoning models".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.offline.reasoning import (
    CandidateIndex,
    Cut,
    Grader,
    Tokenized,
    Trace,
    budget_matching,
    figures,
    item_line,
    replay_trace,
    source_of,
    static_cut,
)
from gateway.offline.session import policy_for
from gateway.policy.schema import Policy

CURVE_POINTS = 24  # static budgets drawn on the plot


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
