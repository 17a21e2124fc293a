"""The prefix cache finds the longest shared token prefix, never the whole prompt, and stays within its bytes."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.worker.prefix_cache import LayerKV, PrefixCache

LAYERS = 2
TOKEN_BYTES = LAYERS * 2 * 4 * 4  # keys and values, one head of 4 fp32 per layer


def kv(n: int) -> list[LayerKV]:
    """``n`` columns per layer, each column holding its position (so reuse is checkable)."""
    col = torch.arange(n, dtype=torch.float32).reshape(1, 1, n, 1).expand(1, 1, n, 4).contiguous()
    return [(col.clone(), -col.clone()) for _ in range(LAYERS)]


def test_the_longest_shared_prefix_wins_and_its_columns_come_back() -> None:
    """Two entries share 10 and 12 tokens with a prompt: the 12-token one is the hit, its columns intact."""
    cache = PrefixCache(10_000, min_reuse=4)
    cache.add(list(range(10)) + [77] * 5, kv(15))
    cache.add(list(range(12)) + [88] * 5, kv(17))
    hit = cache.longest(list(range(20)))
    assert hit is not None and hit.tokens == 12
    assert torch.equal(hit.kv[0][0][0, 0, :12, 0], torch.arange(12, dtype=torch.float32))


def test_the_last_token_is_always_computed() -> None:
    """A prompt equal to an entry reuses all but its last token (its logits are the next token's)."""
    cache = PrefixCache(10_000, min_reuse=4)
    cache.add(list(range(10)), kv(10))
    hit = cache.longest(list(range(10)))
    assert hit is not None and hit.tokens == 9


def test_a_short_shared_prefix_is_a_miss() -> None:
    """Fewer shared tokens than min_reuse: nothing is reused, and the counters say so."""
    cache = PrefixCache(10_000, min_reuse=8)
    cache.add(list(range(20)), kv(20))
    assert cache.longest([*range(7), 99, 100]) is None
    assert (cache.lookups, cache.hits, cache.reused_tokens, cache.prompt_tokens) == (1, 0, 0, 9)


def test_a_prompt_that_extends_an_entry_replaces_it() -> None:
    """A conversation's next turn holds the previous prompt: the shorter entry is dropped, bytes follow."""
    cache = PrefixCache(10_000, min_reuse=4)
    cache.add(list(range(10)), kv(10))
    cache.add(list(range(16)), kv(16))
    assert len(cache) == 1 and cache.nbytes == 16 * TOKEN_BYTES


def test_a_prompt_already_covered_is_not_stored_twice() -> None:
    """A prompt that is a prefix of an entry adds nothing."""
    cache = PrefixCache(10_000, min_reuse=4)
    cache.add(list(range(16)), kv(16))
    cache.add(list(range(10)), kv(10))
    assert len(cache) == 1 and cache.nbytes == 16 * TOKEN_BYTES


def test_the_least_recently_used_entry_goes_first() -> None:
    """Room for two entries: the one last hit stays, the other is evicted by a third."""
    cache = PrefixCache(2 * 10 * TOKEN_BYTES, min_reuse=4)
    cache.add([1] * 10, kv(10))
    cache.add([2] * 10, kv(10))
    assert cache.longest([1] * 11) is not None  # entry 1 is now the most recent
    cache.add([3] * 10, kv(10))
    assert cache.longest([1] * 11) is not None and cache.longest([2] * 11) is None
    assert len(cache) == 2


def test_an_entry_larger_than_the_budget_is_not_kept() -> None:
    """A prompt whose columns alone exceed the budget is skipped and evicts nothing."""
    cache = PrefixCache(10 * TOKEN_BYTES, min_reuse=4)
    cache.add([1] * 8, kv(8))
    cache.add([2] * 20, kv(20))
    assert len(cache) == 1 and cache.longest([1] * 9) is not None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=0, max_size=12), min_size=1, max_size=8), st.integers(1, 60))
def test_bytes_stay_within_budget_and_hits_are_true_prefixes(prompts: list[list[int]], budget_tokens: int) -> None:
    """Any sequence of adds and lookups: bytes within budget, every hit a real shared prefix shorter than the prompt."""
    cache = PrefixCache(budget_tokens * TOKEN_BYTES, min_reuse=1)
    stored: list[list[int]] = []
    for ids in prompts:
        hit = cache.longest(ids)
        if hit is not None:
            assert 1 <= hit.tokens < len(ids)
            assert any(s[: hit.tokens] == ids[: hit.tokens] for s in stored)
        cache.add(ids, kv(len(ids)))
        stored.append(ids)
        assert 0 <= cache.nbytes <= cache.max_bytes
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


def test_an_entry_is_a_copy_of_the_columns_it_was_given() -> None:
    """The live cache goes on decoding into its buffer: an entry made from its views does not change with it."""
    cache = PrefixCache(10_000, min_reuse=4)
    live = kv(10)
    cache.add(list(range(10)), live)
    live[0][0].fill_(-1)
    hit = cache.longest(list(range(11)))
    assert hit is not None and torch.equal(hit.kv[0][0][0, 0, :, 0], torch.arange(10, dtype=torch.float32))
