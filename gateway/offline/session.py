"""What the trade-off benchmark and calibration share: the model, the cache, routing, policy runs.

``ReplaySession`` holds a started ``LocalWorker`` and the generation cache of its model; it runs
full inference (cached), routes rows as the gateway does (classifier -> the predicted domain's
policy, or the default policy) and replays policies over the recorded generations with real
probe side generations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from gateway.offline.dataset import Row
from gateway.offline.generations import FULL_CAP, Generation, GenerationCache, ProbeAnswers, fill_full, model_key
from gateway.offline.replay import PolicyOutput, replay_all
from gateway.policy.schema import DEFAULT_DOMAIN, Policy
from gateway.worker.protocol import ChatMessage

if TYPE_CHECKING:
    from gateway.settings import Settings
    from gateway.worker.local import LocalWorker


def progress(total: int, desc: str, enabled: bool = True) -> tqdm[Any]:
    return tqdm(total=total, desc=desc, unit="q", disable=not enabled, dynamic_ncols=True, leave=True)


class ReplaySession:
    """A started worker plus its generation cache; ``close()`` when done."""

    def __init__(self, worker: LocalWorker, cache: GenerationCache, concurrency: int, show_progress: bool) -> None:
        self.worker = worker
        self.cache = cache
        self.concurrency = concurrency
        self.show_progress = show_progress
        self.probes = ProbeAnswers(worker, cache, concurrency)
        self.generated_now = 0

    @classmethod
    async def open(cls, settings: Settings, *, concurrency: int = 32, show_progress: bool = True) -> ReplaySession:
        from gateway.worker.local import LocalWorker

        worker = LocalWorker.for_serving(settings, max_batch=concurrency)
        await worker.start()
        cache = GenerationCache(settings.data_dir, model_key(settings.model, settings.device, settings.dtype))
        return cls(worker, cache, concurrency, show_progress)

    async def close(self) -> None:
        await self.worker.close()

    def prompt_ids(self, row: Row) -> list[int]:
        """The prompt the gateway sends for a one-message chat with ``row.query``."""
        return self.worker.encode_chat([ChatMessage("user", row.query)])

    async def full(self, rows: Sequence[Row], cap: int = FULL_CAP) -> list[Generation]:
        prompts = [self.prompt_ids(r) for r in rows]
        with progress(len(rows), "full inference", self.show_progress) as bar:
            gens, self.generated_now = await fill_full(
                self.worker, self.cache, prompts, cap, concurrency=self.concurrency, on_done=lambda: bar.update(1)
            )
        return gens

    async def apply(
        self, policies: Sequence[Policy], gens: Sequence[Generation], cap: int = FULL_CAP, desc: str = "policy run"
    ) -> list[PolicyOutput]:
        """``policies[i]`` replayed over ``gens[i]`` (probes answered by the model or the cache)."""
        with progress(len(gens), desc, self.show_progress) as bar:
            return await replay_all(policies, gens, self.probes.answer, cap, on_done=lambda: bar.update(1))


def route_rows(rows: Sequence[Row], settings: Settings) -> tuple[list[str], tuple[str, ...]]:
    """The domain the gateway's classifier picks for each row, plus all domain names."""
    from gateway.classify import Classifier
    from gateway.worker.cores import reserve_cores

    reserve_cores()  # before this thread's first torch op: it must not keep an OpenMP team (see cores)
    classifier = Classifier.from_settings(settings)
    try:
        found = []
        for start in range(0, len(rows), 64):
            found += classifier.classify_many([r.query for r in rows[start : start + 64]])
        names = tuple(classifier.domains.names)
    finally:
        classifier.close()
    return [c.domain for c in found], names


def policy_for(policies: Mapping[str, Policy], domain: str) -> Policy:
    """The policy the gateway applies to ``domain``: its own, else the default."""
    return policies.get(domain) or policies[DEFAULT_DOMAIN]


def routing_accuracy(rows: Sequence[Row], routed: Sequence[str]) -> dict[str, float]:
    per: dict[str, list[bool]] = {}
    for row, domain in zip(rows, routed, strict=True):
        per.setdefault(row.domain, []).append(row.domain == domain)
    return {name: sum(hits) / len(hits) for name, hits in sorted(per.items())}
