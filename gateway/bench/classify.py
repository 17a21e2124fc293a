"""``stopgate bench classify``: accuracy per domain, confusion matrix and latency of the classifier.

Runs in process, on the classifier's own thread exactly as the server does: each query of
``--data`` (JSON lines with ``query`` and ``domain``) is classified on its own and timed, so p50/p99
are single-query latencies (embedding + scoring), not HTTP. Then the whole set is submitted at once
through ``aclassify`` (micro-batches of up to ``--batch``) to report throughput.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from gateway.audit.query import percentile
from gateway.offline.dataset import load_rows

if TYPE_CHECKING:
    from gateway.settings import Settings


SETTINGS = ("domains_dir", "data_dir")


@dataclass(frozen=True)
class Options:
    data: Path = field(metadata={"help": "JSON lines with 'query' and 'domain'"})
    json: Path | None = field(default=None, metadata={"help": "write the figures here"})
    limit: int | None = field(default=None, metadata={"help": "only the first N rows"})
    batch: int = field(default=32, metadata={"help": "largest micro-batch of the throughput pass"})
    threads: int | None = field(
        default=None, metadata={"help": "intra-op threads of the classification thread (default: the classifier's, 1)"}
    )


def evaluate(gold: list[str], predicted: list[str], latencies_ms: list[float]) -> dict[str, Any]:
    """The report: overall and per-domain accuracy, confusion counts (gold -> predicted), latency."""
    per: dict[str, dict[str, Any]] = {}
    confusion: dict[str, Counter[str]] = {}
    for g, p in zip(gold, predicted, strict=True):
        confusion.setdefault(g, Counter())[p] += 1
    for domain in sorted(confusion):
        row = confusion[domain]
        total = sum(row.values())
        per[domain] = {"items": total, "accuracy": row[domain] / total}
    hits = sum(g == p for g, p in zip(gold, predicted, strict=True))
    return {
        "items": len(gold),
        "accuracy": hits / len(gold),
        "worst_domain": min(per, key=lambda d: per[d]["accuracy"]),
        "domains": per,
        "confusion": {g: dict(sorted(c.items())) for g, c in sorted(confusion.items())},
        "latency_ms": {
            "p50": percentile(latencies_ms, 50),
            "p99": percentile(latencies_ms, 99),
            "mean": statistics.fmean(latencies_ms),
        },
    }


def run(options: Options, settings: Settings) -> int:
    from gateway.classify import Classifier

    rows = load_rows(options.data, limit=options.limit)
    started = time.perf_counter()
    if options.threads is None:
        classifier = Classifier.from_settings(settings)
    else:
        classifier = Classifier.from_settings(settings, threads=options.threads)
    load_s = time.perf_counter() - started
    threads = classifier.thread_count()
    try:
        for row in rows[:5]:  # warm-up: first calls allocate
            classifier.classify(row.query)
        predicted: list[str] = []
        latencies: list[float] = []
        for row in rows:
            t0 = time.perf_counter()
            predicted.append(classifier.classify(row.query).domain)
            latencies.append((time.perf_counter() - t0) * 1000.0)
        t0 = time.perf_counter()
        asyncio.run(_submit_all(classifier, [r.query for r in rows], options.batch))
        batch_s = time.perf_counter() - t0
    finally:
        classifier.close()
    report = evaluate([r.domain for r in rows], predicted, latencies)
    report["load_s"] = load_s
    report["batched_queries_per_s"] = len(rows) / batch_s
    report["labels"] = sorted({r.domain for r in rows} | set(predicted))
    report["precision"] = classifier.embedder.precision
    report["threads"] = threads
    report["load_average"] = _load_average()
    _print(report)
    if options.json is not None:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


async def _submit_all(classifier: Any, queries: list[str], max_batch: int) -> None:
    classifier.max_batch = max_batch
    await asyncio.gather(*(classifier.aclassify(q) for q in queries))


def _load_average() -> float | None:
    """The 1-minute load average: latency on a shared machine means little without it."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _print(report: dict[str, Any]) -> None:
    console = Console()
    labels: list[str] = report["labels"]
    table = Table(title="confusion (rows: gold, columns: predicted)")
    table.add_column("gold \\ predicted")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("accuracy", justify="right")
    for gold in sorted(report["confusion"]):
        counts = report["confusion"][gold]
        cells = [f"[bold]{counts.get(p, 0)}[/bold]" if p == gold else str(counts.get(p, 0) or "") for p in labels]
        table.add_row(gold, *cells, f"{report['domains'][gold]['accuracy']:.3f}")
    console.print(table)
    lat = report["latency_ms"]
    console.print(
        f"accuracy {report['accuracy']:.3f} over {report['items']}; worst {report['worst_domain']} "
        f"{report['domains'][report['worst_domain']]['accuracy']:.3f}; latency p50 {lat['p50']:.1f} ms "
        f"p99 {lat['p99']:.1f} ms (single query, in process); batched {report['batched_queries_per_s']:.0f} q/s; "
        f"start-up {report['load_s']:.1f} s; {report['precision']}, {report['threads']} threads, "
        f"1-min load average {report['load_average']}"
    )
