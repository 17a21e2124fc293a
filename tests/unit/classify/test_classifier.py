"""The classifier: routing, fallback, conversations, caching, async batching and atomic reload."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from domain_files import TINY_DOMAINS, write_domains

from gateway.classify.classifier import Classification, Classifier, training_texts, user_turns
from gateway.classify.definitions import DomainDefinition
from gateway.classify.embedder import Embedder, Vectors
from gateway.errors import DefinitionError
from gateway.worker.protocol import ChatMessage


def training_texts_of(examples: list[str]) -> list[str]:
    return training_texts(DomainDefinition(name="x", description="x", examples=tuple(examples)))


class CountingEmbedder(Embedder):
    """The real embedder, counting how many texts it was asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.__dict__.update(inner.__dict__)
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.texts += len(texts)
        return super().embed(texts)


@pytest.fixture()
def classifier(embedder: Embedder, tiny_domains: Path, shared_cache: Path) -> Classifier:
    return Classifier.load(tiny_domains, cache_dir=shared_cache, embedder=embedder)


def test_routes_clear_queries(classifier: Classifier) -> None:
    """Unseen but clear queries land in their domain with a confident score."""
    assert classifier.classify("how much is 45 divided by 9").domain == "math"
    assert classifier.classify("i lost my debit card, please block it").domain == "support"
    assert classifier.classify("suggest a recipe for dinner").domain == "general"


def test_scores_are_a_distribution_over_domains(classifier: Classifier) -> None:
    """Scores cover every domain, sum to 1, and confidence is the winning score."""
    result = classifier.classify("transfer 20 dollars from checking to savings")
    assert isinstance(result, Classification)
    assert set(result.scores) == {"math", "support", "general"}
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert result.confidence == max(result.scores.values()) == result.scores[result.domain]


def test_low_confidence_falls_back_to_general(embedder: Embedder, tiny_domains: Path, shared_cache: Path) -> None:
    """Below the threshold the domain is the fallback; the scores still say what won."""
    strict = Classifier.load(tiny_domains, embedder=embedder, threshold=1.0, cache_dir=shared_cache)
    result = strict.classify("what is 7 times 8")
    assert result.domain == "general"
    assert max(result.scores, key=lambda d: result.scores[d]) == "math"


def test_blank_text_is_the_fallback_with_zero_confidence(classifier: Classifier) -> None:
    """Whitespace has no domain: the fallback, confidence 0, no model call needed."""
    result = classifier.classify("   \n")
    assert (result.domain, result.confidence) == ("general", 0.0)
    assert set(result.scores.values()) == {0.0}


def test_user_turns_from_messages() -> None:
    """Only user messages count, newest first, text parts joined; strings are one turn."""
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url"}]},
        {"role": "user", "content": "third"},
        {"role": "user", "content": "fourth"},
    ]
    assert user_turns(messages) == ["fourth", "third", "second"]
    assert user_turns("plain") == ["plain"]
    assert user_turns([{"role": "system", "content": "x"}]) == []
    structs = [ChatMessage(role="user", content="older"), ChatMessage(role="user", content="newer")]
    assert user_turns(structs) == ["newer", "older"]


def test_last_user_message_decides(classifier: Classifier) -> None:
    """In a conversation the last user message is classified, not the first."""
    messages = [
        {"role": "user", "content": "what is 12 times 12"},
        {"role": "assistant", "content": "144"},
        {"role": "user", "content": "my credit card was declined at the store, why?"},
    ]
    assert classifier.classify(messages).domain == "support"


def test_vague_follow_up_borrows_earlier_turns(embedder: Embedder, tiny_domains: Path, shared_cache: Path) -> None:
    """A low-confidence follow-up is classified together with the user's earlier messages."""
    c = Classifier.load(tiny_domains, embedder=embedder, threshold=0.99, cache_dir=shared_cache)
    follow_up = "and the other one?"
    alone = c.classify(follow_up)
    convo = [
        {"role": "user", "content": "Sam has 14 apples and eats 3. How many are left?"},
        {"role": "assistant", "content": "11"},
        {"role": "user", "content": follow_up},
    ]
    mixed = c.classify(convo)
    assert mixed.scores["math"] > alone.scores["math"] + 0.1


def test_training_texts_add_question_variants() -> None:
    """Each example is embedded as written and as a question; keywords come last."""
    d = DomainDefinition(name="x", description="x", examples=("hello there.", "why?"), keywords=("kw",))
    assert training_texts(d) == ["hello there.", "why?", "hello there?", "kw"]


def test_warm_cache_embeds_nothing(embedder: Embedder, tiny_domains: Path, tmp_path: Path) -> None:
    """A second start with the same files reads embeddings and head from the cache."""
    cache = tmp_path / "cache"
    cold = CountingEmbedder(embedder)
    first = Classifier.load(tiny_domains, cache_dir=cache, embedder=cold)
    assert cold.texts == sum(len(training_texts_of(v)) for v in TINY_DOMAINS.values())
    warm = CountingEmbedder(embedder)
    second = Classifier.load(tiny_domains, cache_dir=cache, embedder=warm)
    assert warm.texts == 0
    query = "what's 9 squared"
    assert first.classify(query) == second.classify(query)
    # Editing one domain re-embeds only that domain.
    write_domains(tiny_domains, {"math": [*TINY_DOMAINS["math"], "add 17 and 25"]})
    edited = CountingEmbedder(embedder)
    Classifier.load(tiny_domains, cache_dir=cache, embedder=edited)
    assert edited.texts == len(training_texts_of([*TINY_DOMAINS["math"], "add 17 and 25"]))


def test_corrupt_cache_file_is_recomputed(embedder: Embedder, tiny_domains: Path, tmp_path: Path) -> None:
    """A damaged cache entry is ignored and rewritten, never trusted."""
    cache = tmp_path / "cache"
    Classifier.load(tiny_domains, cache_dir=cache, embedder=embedder)
    for path in cache.glob("*.npy"):
        path.write_bytes(b"not numpy")
    counting = CountingEmbedder(embedder)
    result = Classifier.load(tiny_domains, cache_dir=cache, embedder=counting).classify("what is 3 plus 4")
    assert counting.texts > 0 and result.domain == "math"


def test_classify_many_matches_classify(classifier: Classifier) -> None:
    """Batched classification gives the same domains as one-by-one."""
    queries = ["what is 5 + 5", "block my card", "play music", "", "A train goes 60 km/h for 3 hours. How far?"]
    batched = classifier.classify_many(queries)
    single = [classifier.classify(q) for q in queries]
    assert [b.domain for b in batched] == [s.domain for s in single]
    for b, s in zip(batched, single, strict=True):
        assert b.confidence == pytest.approx(s.confidence, abs=0.02)


async def test_aclassify_concurrent_calls(classifier: Classifier) -> None:
    """Many concurrent async calls each get their own answer."""
    queries = ["what is 5 + 5", "block my card", "play music"] * 10
    results = await asyncio.gather(*(classifier.aclassify(q) for q in queries))
    assert [r.domain for r in results] == ["math", "support", "general"] * 10


def test_reload_swaps_and_refuses_invalid_sets(classifier: Classifier, tiny_domains: Path) -> None:
    """A valid directory is swapped in; an invalid one raises and the running set stays."""
    extra = {"small_talk": ["hi there", "how are you", "thanks a lot", "goodbye", "what's your name", "tell a joke"]}
    write_domains(tiny_domains, extra)
    assert classifier.reload(tiny_domains).names == ("general", "math", "small_talk", "support")
    assert classifier.classify("hello, how are you today").domain == "small_talk"

    (tiny_domains / "broken.yaml").write_text("name: broken\ndescription: x\nexamples: [a]\nsurprise: 1\n")
    with pytest.raises(DefinitionError) as info:
        classifier.reload(tiny_domains)
    assert info.value.problems[0].field == "surprise" and info.value.problems[0].line == 4
    assert classifier.domains.names == ("general", "math", "small_talk", "support")
    assert classifier.classify("hello, how are you today").domain == "small_talk"


def test_missing_fallback_is_refused(embedder: Embedder, tmp_path: Path) -> None:
    """A set without the fallback domain cannot be loaded."""
    directory = write_domains(tmp_path / "d", {"math": TINY_DOMAINS["math"]})
    with pytest.raises(DefinitionError, match="fallback"):
        Classifier.load(directory, embedder=embedder)


def test_head_is_deterministic(embedder: Embedder, tiny_domains: Path) -> None:
    """Two fits on the same examples give the same scores (no random start)."""
    a = Classifier.load(tiny_domains, embedder=embedder).classify("what is 6 times 7")
    b = Classifier.load(tiny_domains, embedder=embedder).classify("what is 6 times 7")
    assert np.isclose(a.confidence, b.confidence)


def test_classification_thread_count_is_its_own(embedder: Embedder, tiny_domains: Path, shared_cache: Path) -> None:
    """threads=1 applies to the classification thread only; the process default is left as it was."""
    import threading

    import torch

    before = torch.get_num_threads()
    c = Classifier.load(tiny_domains, embedder=embedder, cache_dir=shared_cache, threads=1)
    assert c.thread_count() == 1
    assert torch.get_num_threads() == before
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    assert seen == [before]
