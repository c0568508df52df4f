"""Sampling draws from the distribution it claims to: 20,000 seeded draws through ``generate_ids`` on a model whose
next-token logits are fixed and known, compared with the exact filtered softmax computed here independently (numpy).

A wrong temperature (or none), a top-k/top-p/min-p that keeps the wrong set, or filtering before the temperature
instead of after moves the distribution far more than the sampling noise: each test also checks that the wrong
variant's exact distribution is at least 2× the tolerance away, so the tolerance can tell them apart.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from lmforge.generate import apply_repetition_penalty, generate_ids

LOGITS = np.array([2.0, 1.6, 1.1, 0.9, 0.5, 0.3, 0.0, -0.4, -1.0, -1.6, -2.5, -3.0])
V = len(LOGITS)
DRAWS = 20_000
# Sampling noise of the total-variation distance with 20,000 draws over 12 outcomes is ~0.008 (expected value,
# standard deviation ~0.002); 0.02 is ~2.5× that.
TOL = 0.02


class FixedLogits(nn.Module):
    """A 'language model' whose next-token logits are ``LOGITS`` whatever the input: the decoding loop's
    interface (``model(ids, kv_cache=, last_only=)``, ``new_kv_cache``, ``config``) and nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(LOGITS, dtype=torch.float32), requires_grad=False)
        self.config = SimpleNamespace(vocab_size=V, block_size=8)

    def new_kv_cache(self, batch_size: int, max_len: int) -> None:
        return None

    def forward(self, input_ids, attention_mask=None, position_ids=None, *, kv_cache=None, last_only=False):
        b, t = input_ids.shape
        return self.logits.expand(b, 1 if last_only else t, V)


def exact(temperature: float, top_k: int | None = None, top_p: float | None = None,
          min_p: float | None = None) -> np.ndarray:
    """softmax(logits / T) restricted to the kept set, renormalised — the textbook definitions, in numpy."""
    z = LOGITS / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    keep = np.ones(V, dtype=bool)
    order = np.argsort(-p, kind="stable")
    if top_k is not None:
        keep[order[top_k:]] = False
    if top_p is not None:
        mass_before = np.cumsum(p[order]) - p[order]  # probability of the tokens ranked above
        keep[order[mass_before >= top_p]] = False
    if min_p is not None:
        keep &= p >= min_p * p.max()
    q = np.where(keep, p, 0.0)
    return q / q.sum()


def sampled(seed: int = 0, **options) -> np.ndarray:
    gen = generate_ids(FixedLogits(), [[0]] * DRAWS, max_new_tokens=1, seed=seed, **options)
    ids = np.array([row[0] for row in gen.new_ids])
    return np.bincount(ids, minlength=V) / DRAWS


def tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


SETTINGS = [
    # (options, a wrong variant's exact distribution that the test must be able to tell apart)
    ({"temperature": 1.0}, exact(0.5)),
    ({"temperature": 0.5}, exact(1.0)),  # temperature dropped
    ({"temperature": 2.0}, exact(1.0)),
    ({"temperature": 0.7, "top_k": 4}, exact(0.7, top_k=5)),  # off-by-one k
    ({"temperature": 1.5, "top_k": 3}, exact(1.0, top_k=3)),
    ({"temperature": 1.0, "top_p": 0.8}, exact(1.0)),  # nucleus ignored
    ({"temperature": 2.0, "top_p": 0.5}, exact(1.0, top_p=0.5)),  # filtered at T=1, not at T=2
    ({"temperature": 1.0, "min_p": 0.2}, exact(1.0)),
    ({"temperature": 3.0, "min_p": 0.3}, exact(1.0, min_p=0.3)),
]


@pytest.mark.parametrize(("options", "wrong"), SETTINGS, ids=[str(s[0]) for s in SETTINGS])
def test_sampling_matches_the_exact_filtered_softmax(options, wrong):
    want = exact(options["temperature"], options.get("top_k"), options.get("top_p"), options.get("min_p"))
    assert tv(want, wrong) > 2 * TOL, "the test could not tell the wrong variant from the right one"
    got = sampled(**options)
    assert tv(got, want) < TOL, (got.round(3), want.round(3))
    assert (got[want == 0] == 0).all(), "a filtered-out token was drawn"


def test_seed_reproduces_draws_and_another_seed_differs():
    a, b, c = (generate_ids(FixedLogits(), [[0]] * 200, max_new_tokens=1, temperature=1.0, seed=s).new_ids
               for s in (1, 1, 2))
    assert a == b and a != c


def test_repetition_penalty_equals_transformers_processor():
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    torch.manual_seed(0)
    logits = torch.randn(3, 50) * 4  # positive and negative scores both penalised
    seen = torch.randint(0, 50, (3, 7))  # with repeats inside a row
    for penalty in (1.3, 0.7):
        want = RepetitionPenaltyLogitsProcessor(penalty)(seen, logits.clone())
        got = apply_repetition_penalty(logits, seen, penalty)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
