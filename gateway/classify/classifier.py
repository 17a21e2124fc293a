"""The domain classifier: which domain (and so which stopping policy) a query belongs to.

Method (chosen by measurement, see README): every domain example is embedded twice — as written
and as a question (trailing ``?``) — and a query's scores are the mean of
  * a linear head (multinomial logistic regression, class-balanced, L2) fitted on those embeddings
    at start-up, which generalises across topics (factual questions about anything), and
  * a similarity-weighted vote of the ``NEIGHBOURS`` nearest examples, which keeps narrow intents
    (a routing-number request, a goodbye) close to their own examples.
Scores sum to 1; ``confidence`` is the top score, and below ``threshold`` the domain is the
fallback (``general``).

Conversations: the last user message decides. When it alone is below the threshold (a follow-up
such as "and for 12?"), up to two earlier user messages are mixed into its embedding with weights
1/2 and 1/4 and the mix is classified instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import numpy.typing as npt
import structlog

from gateway.classify.batcher import MicroBatcher
from gateway.classify.cache import ArrayCache, content_key
from gateway.classify.definitions import DomainDefinition, DomainSet, load_domains
from gateway.classify.embedder import (
    EMBEDDING_DIM,
    MAX_CHARS,
    Embedder,
    Vectors,
)
from gateway.domains import FALLBACK_DOMAIN
from gateway.errors import DefinitionError, Problem
from gateway.worker.cores import current_threads, pin_threads

if TYPE_CHECKING:
    import torch

    from gateway.settings import Settings

log = structlog.get_logger(__name__)

DEFAULT_THRESHOLD = 0.4
NEIGHBOURS = 10
NEIGHBOUR_TEMPERATURE = 0.05  # cosine similarities are close together; sharpen the vote
HEAD_WEIGHT = 0.5
HEAD_L2_C = 30.0  # inverse regularisation strength of the linear head
HISTORY_WEIGHTS = (1.0, 0.5, 0.25)  # last user message, the one before, the one before that
# Intra-op threads of the classification thread. Measured on the 2-core dev box: 2 threads are
# ~25% faster when the machine is idle, 1 thread is 5-20x faster when anything else (the model
# worker generating, another process) wants the cores, because OpenMP teams then wait on each other.
CLASSIFY_THREADS = 1

Query = str | Sequence[Any]
"""A text, or an OpenAI-style message list (mappings or objects with ``role`` and ``content``)."""


class Classification(msgspec.Struct, frozen=True):
    domain: str
    confidence: float
    scores: dict[str, float]


@dataclass(frozen=True)
class _Model:
    """Everything one classification needs; replaced whole on reload, never mutated.

    Scoring is in torch, on the classification thread's own intra-op threads: numpy's BLAS keeps
    its own spinning thread pool, which measurably slowed the next forward pass on 2 cores.
    """

    domains: DomainSet
    names: tuple[str, ...]
    examples: torch.Tensor  # (m, dim) float32, unit rows
    labels: torch.Tensor  # (m,) int64
    weight: torch.Tensor  # (dim, k)
    bias: torch.Tensor  # (k,)

    def scores(self, queries: torch.Tensor) -> torch.Tensor:
        """(n, k) scores, each row a distribution over the domains."""
        import torch

        with torch.inference_mode():
            head = torch.softmax(queries @ self.weight + self.bias, dim=1)
            sims = queries @ self.examples.T
            top_sims, top = sims.topk(min(NEIGHBOURS, sims.shape[1]), dim=1)  # sorted, best first
            weights = torch.exp((top_sims - top_sims[:, :1]) / NEIGHBOUR_TEMPERATURE)
            votes = torch.zeros_like(head).scatter_add_(1, self.labels[top], weights)
            votes = votes / votes.sum(dim=1, keepdim=True)
            return HEAD_WEIGHT * head + (1.0 - HEAD_WEIGHT) * votes


def training_texts(definition: DomainDefinition) -> list[str]:
    """The texts embedded for one domain: each example as written and as a question, then keywords."""
    written = list(definition.examples)
    seen = set(written)
    questions = []
    for example in written:
        question = example.rstrip().rstrip("?.!").rstrip() + "?"
        if question not in seen:  # an example that already is a question is not embedded twice
            seen.add(question)
            questions.append(question)
    return [*written, *questions, *definition.keywords]


def user_turns(query: Query, limit: int = len(HISTORY_WEIGHTS)) -> list[str]:
    """The text of the last ``limit`` user messages, most recent first (a plain string is one)."""
    if isinstance(query, str):
        return [query[:MAX_CHARS]]
    turns: list[str] = []
    for message in reversed(query):
        role = message.get("role") if isinstance(message, Mapping) else getattr(message, "role", None)
        if role != "user":
            continue
        content = message.get("content") if isinstance(message, Mapping) else getattr(message, "content", None)
        turns.append(_content_text(content)[:MAX_CHARS])
        if len(turns) == limit:
            break
    return turns


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # OpenAI content parts: [{"type": "text", "text": ...}, ...]
        parts = [p.get("text") if isinstance(p, Mapping) else getattr(p, "text", None) for p in content]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def fit_linear_head(vectors: Vectors, labels: npt.NDArray[np.int64], classes: int) -> tuple[Vectors, Vectors]:
    """Multinomial logistic regression with class-balanced loss and L2; deterministic (zero start)."""
    import torch

    x = torch.from_numpy(vectors)
    y = torch.from_numpy(labels)
    counts = np.bincount(labels, minlength=classes).astype(np.float32)
    balance = torch.from_numpy(len(labels) / (classes * np.maximum(counts, 1.0)))
    weight = torch.zeros((vectors.shape[1], classes), requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")
    penalty = 1.0 / (2.0 * HEAD_L2_C * len(labels))

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y, weight=balance)
        loss = loss + penalty * (weight**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach().numpy().astype(np.float32), bias.detach().numpy().astype(np.float32)


class Classifier:
    """Routes queries to domains. Thread-safe; ``reload`` swaps the domain set atomically."""

    def __init__(
        self,
        embedder: Embedder,
        domains: DomainSet,
        *,
        cache_dir: Path | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        fallback: str = FALLBACK_DOMAIN,
        max_batch: int = 32,
        threads: int | None = CLASSIFY_THREADS,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be within 0..1")
        self.embedder = embedder
        self.threshold = threshold
        self.fallback = fallback
        self._cache = ArrayCache(cache_dir)
        self._reload_lock = threading.Lock()
        self._model = self._build(domains)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classify")
        if threads is not None:
            process_default = current_threads()
            self._executor.submit(pin_threads, threads).result()
            pin_threads(process_default)
        self._batcher: MicroBatcher[Query, Classification] = MicroBatcher(
            self.classify_many, self._executor, max_batch=max_batch
        )

    @classmethod
    def load(
        cls,
        domains_dir: Path,
        *,
        cache_dir: Path | None = None,
        embedder: Embedder | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        fallback: str = FALLBACK_DOMAIN,
        threads: int | None = CLASSIFY_THREADS,
    ) -> Classifier:
        """Validate ``domains_dir`` (raises ``DefinitionError``), load the model, fit the head."""
        domains = load_domains(domains_dir, required=(fallback,))
        return cls(
            embedder or Embedder(),
            domains,
            cache_dir=cache_dir,
            threshold=threshold,
            fallback=fallback,
            threads=threads,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, threads: int | None = CLASSIFY_THREADS) -> Classifier:
        """The classifier for ``settings.domains_dir``, caching embeddings under ``settings.data_dir``."""
        return cls.load(settings.domains_dir, cache_dir=settings.data_dir / "cache" / "classify", threads=threads)

    @property
    def domains(self) -> DomainSet:
        return self._model.domains

    @property
    def max_batch(self) -> int:
        return self._batcher.max_batch

    @max_batch.setter
    def max_batch(self, value: int) -> None:
        if value < 1:
            raise ValueError("max_batch must be >= 1")
        self._batcher.max_batch = value

    def thread_count(self) -> int:
        """The intra-op threads the classification thread runs with."""
        return self._executor.submit(current_threads).result()

    def classify(self, query: Query) -> Classification:
        """Classify on the classification thread (with its thread setting); blocks the caller."""
        return self._executor.submit(self.classify_many, [query]).result()[0]

    def classify_many(self, queries: Sequence[Query]) -> list[Classification]:
        model = self._model  # one snapshot for the whole batch, even if a reload lands meanwhile
        turns = [user_turns(q) for q in queries]
        live = [i for i, t in enumerate(turns) if t and t[0].strip()]
        results = {i: self._blank(model) for i, t in enumerate(turns) if not (t and t[0].strip())}
        if live:
            last = self.embedder.embed_tensor([turns[i][0] for i in live])
            scores = model.scores(last)
            self._add_context(model, [turns[i] for i in live], last, scores)
            rows: list[list[float]] = scores.tolist()
            results.update((i, self._decide(model, row)) for i, row in zip(live, rows, strict=True))
        return [results[i] for i in range(len(queries))]

    def _add_context(self, model: _Model, turns: list[list[str]], last: torch.Tensor, scores: torch.Tensor) -> None:
        """Rescore, in place, low-confidence follow-ups mixed with the user's earlier messages."""
        import torch

        best = scores.max(dim=1).values.tolist()
        retry = [j for j, t in enumerate(turns) if best[j] < self.threshold and len(t) > 1]
        if not retry:
            return
        history = [(j, h, text) for j in retry for h, text in enumerate(turns[j][1:], start=1)]
        earlier = self.embedder.embed_tensor([text for _, _, text in history])
        mixed = {j: last[j] * HISTORY_WEIGHTS[0] for j in retry}
        for (j, h, _), vector in zip(history, earlier, strict=True):
            mixed[j] = mixed[j] + HISTORY_WEIGHTS[h] * vector
        with torch.inference_mode():  # scores is an inference tensor: updated in place only in this mode
            rows = torch.nn.functional.normalize(torch.stack([mixed[j] for j in retry]), dim=1)
            scores[retry] = model.scores(rows)

    async def aclassify(self, query: Query) -> Classification:
        """``classify`` off the event loop; concurrent calls share forward passes (micro-batching)."""
        return await self._batcher.submit(query)

    def reload(self, domains_dir: Path) -> DomainSet:
        """Re-read ``domains_dir`` and swap it in; on any error the running set stays and it raises."""
        with self._reload_lock:
            domains = load_domains(domains_dir, required=(self.fallback,))
            self._model = self._build(domains)
        log.info("classify.reloaded", domains=list(domains.names), digest=domains.digest()[:12])
        return domains

    async def areload(self, domains_dir: Path) -> DomainSet:
        return await asyncio.to_thread(self.reload, domains_dir)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _build(self, domains: DomainSet) -> _Model:
        import torch

        if self.fallback not in domains.names:
            where = str(next(iter(domains.files.values())).parent) if domains.files else "domains"
            raise DefinitionError([Problem(where, 0, "name", f"the fallback domain {self.fallback!r} is not defined")])
        blocks: list[Vectors] = []
        labels: list[npt.NDArray[np.int64]] = []
        keys: list[str] = []
        for index, definition in enumerate(domains.domains):
            texts = training_texts(definition)
            key = content_key("examples", self.embedder.fingerprint, texts)
            blocks.append(self._cache.get(key, (len(texts), EMBEDDING_DIM), partial(self.embedder.embed, texts)))
            labels.append(np.full(len(texts), index, dtype=np.int64))
            keys.append(key)
        examples = np.concatenate(blocks)
        label_array = np.concatenate(labels)
        classes = len(domains.domains)

        def fit() -> Vectors:
            weight, bias = fit_linear_head(examples, label_array, classes)
            return np.vstack([weight, bias[None, :]])

        head_key = content_key("head-v1", keys, HEAD_L2_C)
        head = torch.from_numpy(self._cache.get(head_key, (EMBEDDING_DIM + 1, classes), fit))
        return _Model(
            domains, domains.names, torch.from_numpy(examples), torch.from_numpy(label_array), head[:-1], head[-1]
        )

    def _decide(self, model: _Model, row: list[float]) -> Classification:
        best = max(range(len(row)), key=row.__getitem__)
        confidence = row[best]
        domain = model.names[best] if confidence >= self.threshold else self.fallback
        scores = {name: round(s, 6) for name, s in zip(model.names, row, strict=True)}
        return Classification(domain=domain, confidence=round(confidence, 6), scores=scores)

    def _blank(self, model: _Model) -> Classification:
        return Classification(domain=self.fallback, confidence=0.0, scores={n: 0.0 for n in model.names})
