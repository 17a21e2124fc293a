"""Calibration (``stopgate calibrate``): tune one domain's policy on a data set, within quality bounds.

``grade_within(bounds)`` is its grading: with gold answers (math, factual) agreement with full
inference >= the bound and EM drop <= ``max_em_drop``; without gold, the share of answers whose
core (first two sentences, code: first code block) is kept >= the bound; code fences intact in
every answer. ``calibrate_domain`` is the whole command: ``policies/<domain>.yaml``, the data
set's rows of that domain, cached full inference, the search (``gateway.offline.tuning``), and the
YAML written back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import ConfigError
from gateway.offline.metrics import CODE_DOMAIN, GOLD_DOMAINS, Item, domain_figures
from gateway.offline.replay import PolicyOutput
from gateway.offline.tuning import Grade, Recorded, Score, SearchOptions, Tuned, tune

if TYPE_CHECKING:
    from gateway.settings import Settings


@dataclass(frozen=True)
class Bounds:
    min_agreement: float = 0.95
    max_em_drop: float = 0.01


def score(recorded: Sequence[Recorded], outs: Sequence[PolicyOutput], bounds: Bounds) -> Score:
    """The figures of one domain's outputs and whether they meet ``bounds`` (see the module doc)."""
    items = [
        Item(r.domain, r.gold, r.generation.text, r.generation.tokens, o.text, o.tokens)
        for r, o in zip(recorded, outs, strict=True)
    ]
    fig = domain_figures(items)
    domain = items[0].domain
    ok = True
    if domain in GOLD_DOMAINS:
        ok = fig["agreement"] >= bounds.min_agreement - 1e-9 and (
            fig["em_full"] - fig["em_policy"] <= bounds.max_em_drop + 1e-9
        )
    else:
        ok = fig["answer_kept"] >= bounds.min_agreement - 1e-9
    if domain == CODE_DOMAIN:
        ok = ok and fig["code_fence_intact"] >= 1.0
    return Score(ok, float(fig["saved_pct"]), int(fig["tokens_policy"]), fig)


def grade_within(bounds: Bounds) -> Grade:
    """The ``Grade`` of ``stopgate calibrate``: ``score`` against ``bounds``."""
    return lambda recorded, outs: score(recorded, outs, bounds)


# -- the whole calibration of one domain (``stopgate calibrate``) -------------------------------


@dataclass(frozen=True)
class CalibrateOptions:
    """One domain's calibration on a data set: ``names`` are the known domain names (a policy
    must name one of them); ``limit``: only the first N rows of the domain."""

    domain: str
    data: Path
    names: Sequence[str]
    bounds: Bounds = Bounds()
    search: SearchOptions = field(default_factory=SearchOptions)
    limit: int | None = None
    concurrency: int = 32
    show_progress: bool = True


@dataclass(frozen=True)
class Calibration:
    domain: str
    path: Path
    rows: int
    tuned: Tuned
    original: str
    proposed: str


async def calibrate_domain(settings: Settings, options: CalibrateOptions) -> Calibration:
    """Load ``policies/<domain>.yaml`` and ``tune`` it on the data's rows of ``domain``.

    Full generations come from (and go to) the generation cache, probes are answered by the model.
    """
    from gateway.offline.dataset import load_rows
    from gateway.offline.policy_file import render_policy
    from gateway.offline.session import ReplaySession, progress
    from gateway.policy.loader import parse_policy

    domain = options.domain
    path = settings.policies_dir / f"{domain}.yaml"
    try:
        original = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the policy to calibrate ({exc.strerror or exc}); "
            f"start one from {settings.policies_dir / 'default.yaml'}"
        ) from None
    start = parse_policy(original, source=str(path), domains=options.names, expect_domain=domain)
    rows = load_rows(options.data, options.limit, domain=domain)
    session = await ReplaySession.open(settings, concurrency=options.concurrency, show_progress=options.show_progress)
    try:
        gens = await session.full(rows, options.search.cap)
        recorded = [Recorded(g, r.domain, r.gold) for r, g in zip(rows, gens, strict=True)]
        bar = progress(0, f"calibrating {domain}", options.show_progress)

        def evaluated(count: int) -> None:
            bar.total = count
            bar.update(1)

        tuned = await tune(
            start,
            recorded,
            grade_within(options.bounds),
            probe=session.probes.answer,
            options=options.search,
            on_evaluated=evaluated,
        )
        bar.close()
    finally:
        await session.close()
    proposed = render_policy(original, tuned.best)
    parse_policy(proposed, source=str(path), domains=options.names, expect_domain=domain)  # what we write must load
    return Calibration(domain, path, len(rows), tuned, original, proposed)
