"""The n-gram models against an independent count-based computation (plain dicts, one formula per order)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from lmforge.errors import ConfigError, InputError
from lmforge.models.ngram import NgramConfig, NgramLM

TRAIN = [[0, 1, 2, 0, 1, 3, 0, 1, 2, 2, 4], [1, 2, 0, 1, 3, 3, 0]]
V = 6  # id 5 never occurs


def reference_kn(train: list[list[int]], order: int, D: float, V: int):
    """Interpolated Kneser-Ney written out from Chen & Goodman (1998), eq. (2)/(3), with plain Counters."""
    grams = Counter()
    for seq in train:
        for k in range(1, order + 1):
            for i in range(len(seq) - k + 1):
                grams[tuple(seq[i : i + k])] += 1

    def cont(g):  # N1+(• g): distinct tokens seen before g
        return sum(1 for h in grams if len(h) == len(g) + 1 and h[1:] == g)

    def p(w, h, top):
        if len(h) == 0 and not top:
            denom = sum(cont((x,)) for x in range(V))
            types = sum(1 for x in range(V) if cont((x,)) > 0)
            return max(cont((w,)) - D, 0) / denom + D * types / denom / V
        count = (lambda g: grams.get(g, 0)) if top else cont
        denom = sum(count((*h, x)) for x in range(V))
        lower = p(w, h[1:], False) if h else 1.0 / V
        if denom == 0:
            return lower
        types = sum(1 for x in range(V) if count((*h, x)) > 0)
        return max(count((*h, w)) - D, 0) / denom + D * types / denom * lower

    return p


@pytest.mark.parametrize("order", [2, 3, 4])
def test_kneser_ney_equals_independent_computation(order):
    lm = NgramLM(NgramConfig(vocab_size=V, order=order, discount=0.75)).fit(TRAIN)
    ref = reference_kn(TRAIN, order, 0.75, V)
    test = [1, 2, 2, 0, 1, 5, 3, 0, 4, 1]
    got = lm.log_probs(test)
    want = [math.log(ref(w, tuple(test[max(0, i - order + 1) : i]), True)) for i, w in enumerate(test)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    for h in [(), (1,), (0, 1), (5, 5, 5), (2, 2)]:  # every distribution sums to one, unseen contexts included
        assert lm.distribution(h).sum() == pytest.approx(1.0, abs=1e-12)


def test_unigram_is_add_one_counts():
    lm = NgramLM(NgramConfig(vocab_size=V, order=1)).fit(TRAIN)
    counts = Counter(t for s in TRAIN for t in s)
    n = sum(counts.values())
    test = [0, 5, 2, 4]
    np.testing.assert_allclose(lm.log_probs(test), [math.log((counts[w] + 1) / (n + V)) for w in test], rtol=1e-12)


def test_more_context_helps_on_repetitive_text():
    text = [list(b"the cat sat on the mat. " * 20)]
    held = list(b"the cat sat on the mat. the cat")
    losses = [-NgramLM(NgramConfig(256, order=n)).fit(text).log_probs(held).mean() for n in (1, 2, 3, 5)]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.5 * losses[0]


def test_bad_input():
    with pytest.raises(ConfigError, match="order"):
        NgramConfig(vocab_size=4, order=0)
    with pytest.raises(ConfigError, match="discount"):
        NgramConfig(vocab_size=4, discount=1.5)
    with pytest.raises(InputError, match="token ids"):
        NgramLM(NgramConfig(vocab_size=4)).fit([[0, 9]])
    with pytest.raises(InputError, match="no training tokens"):
        NgramLM(NgramConfig(vocab_size=4)).fit([[]])
