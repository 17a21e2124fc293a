"""Choosing each row's next token from one batched step's logits.

Greedy or temperature/top-p per row, the chosen token's logprob and the distribution's entropy
for every row; the extra work only for the rows that ask for it: logit edits (penalties,
``logit_bias``) and the ``top_logprobs`` alternatives (one ``topk`` over those rows).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gateway.worker.protocol import SamplingParams, TopLogprob
from gateway.worker.sequence import Sampled, Sequence


def sample(logits: torch.Tensor, seqs: list[Sequence], token_text: Callable[[int], str]) -> list[Sampled]:
    """One ``Sampled`` per row of ``logits`` (``[rows, vocab]``), in ``seqs`` order."""
    logits = logits.float()  # a fresh tensor each step (or a view of one): edited in place
    edited = [i for i, s in enumerate(seqs) if s.options.edits_logits]
    if edited:
        for i in edited:
            _edit(logits[i], seqs[i])
    logprobs = torch.log_softmax(logits, dim=-1)
    chosen = torch.argmax(logprobs, dim=-1)
    for i, seq in enumerate(seqs):
        if not seq.params.greedy:
            chosen[i] = _sample_row(logits[i], seq.params, seq.generator)
    picked = logprobs.gather(1, chosen[:, None])[:, 0]
    # -sum(p * log p); 0 * -inf (a token with no mass) counts as 0. In place: one vocab-wide buffer.
    entropy = -logprobs.exp().mul_(logprobs).nan_to_num_().sum(dim=-1)
    tops = _top_logprobs(logprobs, seqs, token_text)
    stats = torch.stack([chosen.double(), picked.double(), entropy.double()], dim=1).tolist()  # one host sync
    return [Sampled(int(token), logprob, ent, tops.get(i, ())) for i, (token, logprob, ent) in enumerate(stats)]


def _top_logprobs(
    logprobs: torch.Tensor, seqs: list[Sequence], token_text: Callable[[int], str]
) -> dict[int, tuple[TopLogprob, ...]]:
    rows = [i for i, s in enumerate(seqs) if s.top_logprobs > 0]
    if not rows:
        return {}
    k = max(seqs[i].top_logprobs for i in rows)
    values, ids = logprobs[rows].topk(k, dim=-1)
    out: dict[int, tuple[TopLogprob, ...]] = {}
    for row, vals, toks in zip(rows, values.tolist(), ids.tolist(), strict=True):
        n = seqs[row].top_logprobs
        out[row] = tuple(TopLogprob(token_text(t), v) for t, v in zip(toks[:n], vals[:n], strict=True))
    return out


def _edit(row: torch.Tensor, seq: Sequence) -> None:
    """OpenAI's penalties on the tokens generated so far, and ``logit_bias``, in place."""
    options = seq.options
    if options.logit_bias:
        if seq.bias is None:
            ids = torch.tensor(list(options.logit_bias), dtype=torch.long, device=row.device)
            seq.bias = ids, torch.tensor(list(options.logit_bias.values()), dtype=row.dtype, device=row.device)
        row.index_add_(0, *seq.bias)
    if seq.counts:
        ids = torch.tensor(list(seq.counts), dtype=torch.long, device=row.device)
        counts = torch.tensor(list(seq.counts.values()), dtype=row.dtype, device=row.device)
        row.index_add_(0, ids, -(counts * options.frequency_penalty + options.presence_penalty))


def _sample_row(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    probs = torch.softmax(logits / max(params.temperature, 1e-5), dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
        keep[0] = True  # a top_p that rounds to 0 still leaves the most likely token
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    probs = probs / probs.sum()
    if generator is not None and probs.device.type != "cpu":
        return torch.multinomial(probs.cpu(), 1, generator=generator)[0].to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)[0]
