"""Trade-off metrics: EM, normalisation, agreement, fence integrity and the static-budget baseline."""

from __future__ import annotations

import asyncio

import pytest

from gateway.offline.generations import Generation
from gateway.offline.metrics import (
    Item,
    answer_kept,
    closest_budget,
    domain_figures,
    exact_match,
    fence_intact,
    last_number,
    normalise,
    saved_pct,
)
from gateway.offline.replay import policy_engine, run_policy
from gateway.offline.report import build_report, markdown, static_budget
from gateway.policy.rules import CodeBlocks, Probe, Sentences
from gateway.policy.schema import Policy
from gateway.worker.protocol import ProbeResult


def item(domain: str, gold: list[str] | None, full: str, cut: str, tf: int = 10, tc: int = 5) -> Item:
    return Item(domain, gold, full, tf, cut, tc)


def test_normalise_drops_case_punctuation_and_articles() -> None:
    """Lowercase, no punctuation, no a/an/the, single spaces."""
    assert normalise("The  Eiffel-Tower, in PARIS!") == "eiffeltower in paris"
    assert normalise("An apple a day") == "apple day"
    assert normalise("theatre") == "theatre"  # articles only as whole words


def test_last_number_takes_the_final_number_with_commas_and_decimals() -> None:
    """The last number counts; thousands commas and a trailing full stop are ignored."""
    assert last_number("3 apples and 1,250 pears.") == 1250.0
    assert last_number("It costs $4.50.") == 4.5
    assert last_number("#### 72\nThen 8 more") == 8.0
    assert last_number("a loss of -3") == -3.0
    assert last_number("no numbers here") is None


def test_math_em_compares_the_last_number_with_gold() -> None:
    """Math EM: the last number equals a gold number (numerically: 18.0 == 18)."""
    assert exact_match("math", "She has 18.0 eggs", ["18"]) is True
    assert exact_match("math", "#### 18\nbut then 20", ["18"]) is False
    assert exact_match("math", "none", ["18"]) is False


def test_factual_em_is_normalised_containment() -> None:
    """Factual EM: any normalised gold answer contained in the normalised output."""
    assert exact_match("factual", "It was built by the Romans, in 80 AD.", ["Romans", "Rome"]) is True
    assert exact_match("factual", "It is in the city of Paris.", ["the city"]) is True
    assert exact_match("factual", "Nobody knows.", ["Romans"]) is False
    assert exact_match("factual", "anything", ["the"]) is False  # gold normalising to nothing never matches


def test_em_is_none_without_gold() -> None:
    """Domains without gold answers have no EM."""
    assert exact_match("support", "ok", None) is None
    assert exact_match("code", "ok", ["x"]) is None


def test_math_agreement_is_the_share_with_the_same_final_number() -> None:
    """Math agreement compares final numbers of the full and the cut output (gold plays no part)."""
    items = [
        item("math", ["5"], "2 + 3 = 5", "2 + 3 = 5"),
        item("math", ["5"], "#### 5 then 7", "#### 5"),  # full ends on 7, the cut on 5
        item("math", ["9"], "2 + 3 = 5", "2 + 3 = 5"),
        item("math", ["9"], "no answer", "no"),
    ]
    fig = domain_figures(items)
    assert fig["agreement"] == 0.75
    assert fig["em_full"] == 0.25 and fig["em_policy"] == 0.5
    assert fig["code_fence_intact"] is None


def test_factual_agreement_counts_only_items_right_under_full_inference() -> None:
    """Factual agreement: of the full-correct items, the share still correct after the cut."""
    items = [
        item("factual", ["paris"], "It is Paris.", "It is Paris."),
        item("factual", ["paris"], "France. Its capital, Paris.", "France."),
        item("factual", ["rome"], "Paris.", "Paris."),  # wrong either way: not counted
    ]
    fig = domain_figures(items)
    assert fig["agreement"] == 0.5
    assert fig["em_full"] == pytest.approx(2 / 3) and fig["em_policy"] == pytest.approx(1 / 3)
    assert domain_figures([item("factual", ["x"], "no", "no")])["agreement"] == 1.0


def test_code_fences_intact_excuses_answers_full_inference_already_broke() -> None:
    """An odd fence count is a cut's fault only if the full answer was balanced."""
    assert fence_intact("```py\nx\n```") and not fence_intact("```py\nx")
    items = [
        item("code", None, "```py\nx\n```\nmore", "```py\nx\n```"),
        item("code", None, "```py\nx\n```", "```py\nx"),  # the cut broke it
        item("code", None, "```py\nloops", "```py\nlo"),  # broken by the budget under full inference too
    ]
    fig = domain_figures(items)
    assert fig["code_fence_intact"] == pytest.approx(2 / 3)
    assert fig["em_full"] is None and fig["agreement"] is None


def test_saved_pct_and_domain_token_totals() -> None:
    """Tokens are summed per domain and saved_pct is in percent."""
    fig = domain_figures([item("support", None, "a", "a", 100, 40), item("support", None, "b", "b", 50, 50)])
    assert (fig["tokens_full"], fig["tokens_policy"]) == (150, 90)
    assert fig["saved_pct"] == pytest.approx(40.0)
    assert saved_pct(0, 0) == 0.0


def test_closest_budget_matches_the_target_total() -> None:
    """The global budget whose total min(length, budget) is closest to the target."""
    lengths = [10, 100, 512, 512]
    assert closest_budget(lengths, target=10 + 4 * 0 + 3 * 50, cap=512) == 50  # 10 + 50 * 3
    assert closest_budget(lengths, target=sum(lengths), cap=512) == 512
    assert closest_budget(lengths, target=4, cap=512) == 1
    # brute force agrees
    for target in (0, 77, 300, 700, 1000):
        best = min(range(1, 513), key=lambda b: (abs(sum(min(n, b) for n in lengths) - target), -b))
        assert closest_budget(lengths, target, 512) == best


def test_static_budget_truncates_full_outputs_at_the_global_budget() -> None:
    """The baseline's EM comes from full outputs cut at the one budget, per domain."""
    texts_a = ["The", " answer", " is", " 4", ".", " Then", " 5"]
    texts_b = ["It", " is", " Rome", "."]
    items = [
        Item("math", ["4"], "".join(texts_a), 7, "The answer is 4.", 5),
        Item("factual", ["rome"], "".join(texts_b), 4, "It is Rome.", 4),
    ]
    base = static_budget(items, [texts_a, texts_b], target=9, cap=512)
    assert base["max_tokens"] == 5 and base["tokens"] == 9
    assert base["domains"]["math"]["em"] == 1.0 and base["domains"]["math"]["agreement"] == 0.0
    assert base["domains"]["factual"]["em"] == 1.0 and base["domains"]["factual"]["agreement"] == 1.0


def test_report_has_the_contract_shape() -> None:
    """--json carries overall, domains and the static baseline with the documented keys."""
    texts = ["x", " 1"]
    items = [Item("math", ["1"], "x 1", 2, "x 1", 2), Item("support", None, "x 1", 2, "x", 1)]
    report = build_report(items, [texts, texts], cap=512)
    assert set(report["overall"]) == {"items", "tokens_full", "tokens_policy", "saved_pct"}
    assert report["overall"]["saved_pct"] == pytest.approx(25.0)
    keys = {
        "items",
        "tokens_full",
        "tokens_policy",
        "saved_pct",
        "em_full",
        "em_policy",
        "agreement",
        "code_fence_intact",
    }
    assert all(set(d) == keys | {"answer_kept"} for d in report["domains"].values())
    static = report["baselines"]["static_budget"]
    assert {"max_tokens", "tokens", "domains"} <= set(static)
    assert static["domains"]["support"]["em"] is None
    assert "| math |" in markdown(report)


def gen(texts: list[str], ids: list[int] | None = None) -> Generation:
    ids = ids or list(range(10, 10 + len(texts)))
    return Generation([1, 2], 512, "stop", ids, texts, [-0.1] * len(texts), [0.1] * len(texts))


def test_replay_keeps_the_prefix_the_engine_sends() -> None:
    """A sentence limit keeps the text up to the cut and counts the tokens the engine kept."""
    policy = Policy(domain="factual", max_tokens=512, rules=(Sentences(max=1),))
    g = gen(["Paris", " is", " big", ".", " It", " is", " old", "."])
    out = asyncio.run(run_policy(policy_engine(policy, 512), g, None))
    assert (out.text, out.tokens, out.stop_rule) == ("Paris is big.", 4, "sentences")


def test_replay_never_cuts_a_code_block() -> None:
    """The code-block rule stops right after the block closes, fences balanced."""
    policy = Policy(domain="code", max_tokens=512, rules=(CodeBlocks(max=1),))
    g = gen(["```", "py", "\n", "x", "\n", "```", "\n", "Done", "."])
    out = asyncio.run(run_policy(policy_engine(policy, 512), g, None))
    assert out.text == "```py\nx\n```" and fence_intact(out.text)


def test_replay_asks_probes_on_the_prefix_sent_so_far() -> None:
    """Probes see prompt + the tokens sent so far; agreeing answers stop with the token kept."""
    asked: list[list[int]] = []

    async def probe(ids: list[int], suffix: str, max_tokens: int) -> ProbeResult:
        asked.append(ids)
        return ProbeResult(" 42", 1, 0.99)

    policy = Policy(domain="math", max_tokens=512, rules=(Probe(every=2, agree=2, answer="number"),))
    g = gen(["a", "b", "c", "d", "e", "f"])
    out = asyncio.run(run_policy(policy_engine(policy, 512), g, probe))
    assert out.stop_rule == "probe" and out.tokens == 4 and out.text == "abcd"
    assert asked == [[1, 2, 10, 11], [1, 2, 10, 11, 12, 13]]


def test_answer_kept_needs_the_first_sentences_or_the_first_code_block() -> None:
    """Without gold, a cut keeps the answer if it holds the first two sentences (code: first block)."""
    full = "Sure. Your card is blocked. Call us to unblock it. We are open daily."
    assert answer_kept("support", full, "Sure. Your card is blocked.")
    assert not answer_kept("support", full, "Sure. Your card")
    assert answer_kept("support", "Just one line", "Just one line")
    code = "Here:\n```py\nx = 1\n```\nThat sets x. Done."
    assert answer_kept("code", code, "Here:\n```py\nx = 1\n```")
    assert not answer_kept("code", code, "Here:\n```py\nx = 1\n")


def test_answer_core_of_lists_and_loops() -> None:
    """A list's first two lines are its opening; a loop without sentence ends is capped."""
    listing = "Ingredients:\n\n- flour\n- eggs\n- milk\n"
    assert answer_kept("general", listing, "Ingredients:\n\n- flour")
    assert not answer_kept("general", listing, "Ingredients:\n")
    loop = "la casa " * 100
    assert answer_kept("general", loop, loop[:220])
    assert not answer_kept("general", loop, loop[:120])
