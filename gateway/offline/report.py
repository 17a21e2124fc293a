"""The trade-off report: the JSON document of DESIGN.md, a Markdown table and a PNG plot.

``build_report`` turns per-item outputs into the report; everything it prints can be
recomputed from the ``--items-out`` file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.offline.metrics import GOLD_DOMAINS, Item, closest_budget, domain_figures, saved_pct


def _by_domain(items: Sequence[Item]) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for item in items:
        out.setdefault(item.domain, []).append(item)
    return dict(sorted(out.items()))


def overall(items: Sequence[Item]) -> dict[str, Any]:
    full = sum(i.tokens_full for i in items)
    cut = sum(i.tokens_cut for i in items)
    return {"items": len(items), "tokens_full": full, "tokens_policy": cut, "saved_pct": saved_pct(full, cut)}


def per_domain(items: Sequence[Item]) -> dict[str, dict[str, Any]]:
    return {name: domain_figures(group) for name, group in _by_domain(items).items()}


def truncate(texts: Sequence[str], budget: int) -> str:
    return "".join(texts[:budget])


def static_budget(items: Sequence[Item], token_texts: Sequence[Sequence[str]], target: int, cap: int) -> dict[str, Any]:
    """One global max_tokens with total tokens closest to ``target``; full outputs truncated at it."""
    budget = closest_budget([i.tokens_full for i in items], target, cap)
    cut = [
        Item(i.domain, i.gold, i.text_full, i.tokens_full, truncate(texts, budget), min(i.tokens_full, budget))
        for i, texts in zip(items, token_texts, strict=True)
    ]
    domains = {}
    for name, fig in per_domain(cut).items():
        domains[name] = {
            "em": fig["em_policy"],
            "agreement": fig["agreement"],
            "tokens": fig["tokens_policy"],
            "saved_pct": fig["saved_pct"],
            "code_fence_intact": fig["code_fence_intact"],
        }
    return {"max_tokens": budget, "tokens": sum(i.tokens_cut for i in cut), "domains": domains}


def build_report(
    items: Sequence[Item], token_texts: Sequence[Sequence[str]], cap: int, run: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``--json`` document: overall, domains, baselines (+ ``run`` facts such as wall time)."""
    head = overall(items)
    report: dict[str, Any] = {
        "overall": head,
        "domains": per_domain(items),
        "baselines": {"static_budget": static_budget(items, token_texts, head["tokens_policy"], cap)},
    }
    if run is not None:
        report["run"] = dict(run)
    return report


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}%" if pct else f"{value:.3f}"
    return str(value)


def markdown(report: Mapping[str, Any]) -> str:
    """A Markdown summary: one row per domain with the static baseline, then the probe-only sample."""
    static = report["baselines"]["static_budget"]
    lines = [
        "| domain | items | tokens full | tokens policy | saved | EM full | EM policy | agreement "
        "| fences intact | static saved | static EM | static agreement |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, d in report["domains"].items():
        s = static["domains"].get(name, {})
        lines.append(
            f"| {name} | {d['items']} | {d['tokens_full']} | {d['tokens_policy']} | {_fmt(d['saved_pct'], True)} "
            f"| {_fmt(d['em_full'])} | {_fmt(d['em_policy'])} | {_fmt(d['agreement'])} "
            f"| {_fmt(d['code_fence_intact'])} | {_fmt(s.get('saved_pct'), True)} | {_fmt(s.get('em'))} "
            f"| {_fmt(s.get('agreement'))} |"
        )
    o = report["overall"]
    lines.append(
        f"| **overall** | {o['items']} | {o['tokens_full']} | {o['tokens_policy']} | {_fmt(o['saved_pct'], True)} "
        f"| | | | | {_fmt(saved_pct(o['tokens_full'], static['tokens']), True)} | | |"
    )
    lines += [
        "",
        f"Static budget: one global max_tokens = {static['max_tokens']} ({static['tokens']} tokens in all; "
        f"the policies {o['tokens_policy']}).",
    ]
    probe = report["baselines"].get("probe_only")
    if probe:
        mine = probe["per_domain_policies_on_sample"]
        lines += [
            "",
            f"Probe-only baseline (one Dynasor-style probe rule for every domain), {probe['sample']}, "
            f"against the per-domain policies on the same rows:",
            "",
            "| domain | items | probe-only saved | probe-only EM | probe-only agreement | policies saved "
            "| policies EM | policies agreement |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, p in probe["domains"].items():
            m = mine["domains"][name]
            lines.append(
                f"| {name} | {p['items']} | {_fmt(p['saved_pct'], True)} | {_fmt(p['em_policy'])} "
                f"| {_fmt(p['agreement'])} | {_fmt(m['saved_pct'], True)} | {_fmt(m['em_policy'])} "
                f"| {_fmt(m['agreement'])} |"
            )
        lines.append(
            f"| **overall** | {probe['items']} | {_fmt(probe['saved_pct'], True)} | | "
            f"| {_fmt(mine['overall']['saved_pct'], True)} | | |"
        )
        lines.append(f"(probe side generations: {probe['probe_tokens']} tokens, not counted as completion tokens)")
    run = report.get("run")
    if run:
        lines += [
            "",
            f"Wall time {run.get('wall_s', 0):.0f} s (full inference {run.get('full_s', 0):.0f} s for "
            f"{run.get('full_generated', 0)} newly generated rows, the rest from the cache).",
        ]
    return "\n".join(lines) + "\n"


def plot(report: Mapping[str, Any], path: Path) -> None:
    """PNG: tokens saved vs EM for the domains with gold answers, plus saved % for every domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = report["domains"]
    static = report["baselines"]["static_budget"]
    probe = report["baselines"].get("probe_only")
    gold = [d for d in GOLD_DOMAINS if d in domains]
    fig, axes = plt.subplots(1, len(gold) + 1, figsize=(5 * (len(gold) + 1), 4.2))
    axes = list(axes) if len(gold) else [axes]
    for ax, name in zip(axes, gold, strict=False):
        d = domains[name]
        points = [
            ("full inference", 0.0, d["em_full"], "black", "o"),
            ("per-domain policy", d["saved_pct"], d["em_policy"], "tab:green", "*"),
            (
                f"static budget ({static['max_tokens']})",
                static["domains"][name]["saved_pct"],
                static["domains"][name]["em"],
                "tab:red",
                "s",
            ),
        ]
        if probe and name in probe["domains"]:
            pd = probe["domains"][name]
            points.append((f"probe-only (sample of {pd['items']})", pd["saved_pct"], pd["em_policy"], "tab:blue", "^"))
            mine = probe["per_domain_policies_on_sample"]["domains"][name]
            points.append(
                (f"per-domain policy (same {pd['items']})", mine["saved_pct"], mine["em_policy"], "tab:green", "v")
            )
        for label, x, y, colour, marker in points:
            ax.scatter([x], [y], label=label, color=colour, marker=marker, s=120 if marker == "*" else 60)
        top = max((p[2] or 0.0) for p in points)
        ax.set_ylim(-0.01, max(0.1, top * 1.8))  # head room for the legend
        ax.set_title(f"{name} ({d['items']} items)")
        ax.set_xlabel("completion tokens saved (%)")
        ax.set_ylabel("exact match")
        ax.set_xlim(-5, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    ax = axes[-1]
    names = list(domains)
    width = 0.27
    xs = range(len(names))
    ax.bar([x - width for x in xs], [domains[n]["saved_pct"] for n in names], width, label="policy", color="tab:green")
    ax.bar(list(xs), [static["domains"][n]["saved_pct"] for n in names], width, label="static", color="tab:red")
    if probe:
        ax.bar(
            [x + width for x in xs],
            [probe["domains"].get(n, {}).get("saved_pct", 0.0) for n in names],
            width,
            label="probe-only (sample)",
            color="tab:blue",
        )
    ax.set_xticks(list(xs), names, rotation=30, ha="right")
    ax.set_ylabel("completion tokens saved (%)")
    ax.set_title(f"saved per domain (overall {report['overall']['saved_pct']:.1f}%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
