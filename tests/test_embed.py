"""Cosine similarity and top-k of lmforge.embed against scikit-learn / numpy oracles."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

from lmforge.embed import SentenceConfig, cosine_similarity, top_k
from lmforge.errors import ConfigError, InputError


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
