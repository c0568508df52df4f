"""Pooling, cosine similarity and top-k of lmforge.embed against scikit-learn / numpy oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

from lmforge.embed import SentenceConfig, cosine_similarity, pool, top_k
from lmforge.errors import ConfigError, InputError


def test_pool_ignores_padding():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 3, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    mean = pool(hidden, mask, ["mean"])
    torch.testing.assert_close(mean[0], hidden[0, :3].mean(0))
    torch.testing.assert_close(mean[1], hidden[1].mean(0))
    torch.testing.assert_close(pool(hidden, mask, ["max"])[0], hidden[0, :3].amax(0))
    torch.testing.assert_close(pool(hidden, mask, ["mean_sqrt_len_tokens"])[0], hidden[0, :3].sum(0) / 3**0.5)
    both = pool(hidden, mask, ["cls", "mean"])
    assert both.shape == (2, 6) and torch.equal(both[:, :3], hidden[:, 0])


def test_cosine_and_top_k_match_references():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 8)), rng.normal(size=(50, 8))
    sims = cosine_similarity(a, b)
    np.testing.assert_allclose(sims, sk_cosine(a, b), atol=1e-6)
    idx, vals = top_k(sims, 5)
    np.testing.assert_array_equal(idx, np.argsort(-sims, axis=1)[:, :5])
    np.testing.assert_allclose(vals, np.sort(sims, axis=1)[:, ::-1][:, :5])
    assert top_k(sims, 99)[0].shape == (4, 50)  # k larger than the corpus: everything, ranked
    with pytest.raises(InputError, match="sizes differ"):
        cosine_similarity(a, b[:, :4])


def test_sentence_config_validates():
    assert SentenceConfig(pooling="cls").pooling == ("cls",)
    with pytest.raises(ConfigError, match="pooling"):
        SentenceConfig(pooling=("weighted",))
    with pytest.raises(ConfigError, match="max_seq_length"):
        SentenceConfig(max_seq_length=1)
