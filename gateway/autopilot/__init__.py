"""Autopilot: sampled full generations of live traffic re-tune each domain's policy.

``samples`` keeps the generations in Redis, ``tuner`` decides (pure: replay, Wilson bound,
accept / reject / roll back), ``runner`` runs it while traffic flows and writes the decisions
through the policy store.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.autopilot.runner import AutopilotRunner
from gateway.autopilot.samples import SampleStore
from gateway.policy.records import PolicyRecords, connect

if TYPE_CHECKING:
    from gateway.settings import Settings


@dataclass(frozen=True)
class Autopilot:
    """What the app wires: ``samples`` (the ``SampleSink`` for the chat pipeline) and ``runner``."""

    samples: SampleStore
    runner: AutopilotRunner


def build_autopilot(
    settings: Settings, redis_url: str, domains: Collection[str], *, embed: Callable[[Sequence[str]], Any] | None = None
) -> Autopilot:
    """The sample store and the runner on one Redis client, not started (the CLI uses them as they are)."""
    client = connect(redis_url)
    samples = SampleStore(
        redis_url,
        max_samples=settings.autopilot_max_samples,
        max_age_s=settings.autopilot_max_sample_age_s,
        client=client,
    )
    runner = AutopilotRunner(
        PolicyRecords(client),
        samples,
        domains,
        interval_s=settings.autopilot_interval_s,
        tune_every=settings.autopilot_tune_every,
        embed=embed,
    )
    return Autopilot(samples, runner)


@contextlib.asynccontextmanager
async def running_autopilot(
    settings: Settings,
    redis_url: str,
    domains: Collection[str],
    *,
    embed: Callable[[Sequence[str]], Any] | None = None,
) -> AsyncIterator[Autopilot]:
    """The sample store and the tuning loop, started; on exit the queued samples are written first.

    ``embed``: the classifier's sentence embedder (texts -> rows of floats, e.g. a numpy array),
    for the ``semantic`` quality metric.
    """
    autopilot = build_autopilot(settings, redis_url, domains, embed=embed)
    samples, runner = autopilot.samples, autopilot.runner
    samples.on_written = runner.notify
    await samples.start()
    await runner.start()
    try:
        yield Autopilot(samples, runner)
    finally:
        await runner.close()
        await samples.close()  # closes the shared client
