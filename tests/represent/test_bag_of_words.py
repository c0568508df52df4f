"""BagOfWords behaviour of its own: invariants and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.errors import ConfigError, InputError
from lmforge.represent import BagOfWords
from lmforge.represent.bag_of_words import word_ngrams


def test_row_sums_are_token_counts():
    docs = ["one two two three three three", "", "Two THREE"]
    X = BagOfWords().fit_transform(docs)
    assert X.sum(axis=1).A1.tolist() == [6, 0, 2]


def test_tfidf_rows_are_unit_length_or_zero():
    X = BagOfWords(tfidf=True).fit_transform(["a cat and a dog", "the the the", "..."])
    norms = np.sqrt(X.multiply(X).sum(axis=1).A1)
    np.testing.assert_allclose(norms, [1.0, 1.0, 0.0], atol=1e-12)


def test_ngrams_order_and_short_documents():
    assert word_ngrams(["a"], (1, 3)) == ["a"]
    assert word_ngrams(["a", "b", "c"], (2, 3)) == ["a b", "b c", "a b c"]


def test_empty_corpus_and_empty_vocabulary_are_clear_errors():
    with pytest.raises(InputError, match="empty corpus"):
        BagOfWords().fit([])
    with pytest.raises(InputError, match="empty vocabulary"):
        BagOfWords().fit(["a b c", "!"])  # single letters are not tokens by default


def test_bad_arguments_name_the_field():
    with pytest.raises(ConfigError, match="ngram_range"):
        BagOfWords(ngram_range=(2, 1))
    with pytest.raises(ConfigError, match="max_df"):
        BagOfWords(max_df=1.5)
    with pytest.raises(ConfigError, match="tokenizer"):
        BagOfWords(tokenizer=42)
    with pytest.raises(ConfigError, match="token_pattern"):
        BagOfWords(token_pattern="(")
    with pytest.raises(ConfigError, match="no terms remain"):
        BagOfWords(min_df=2).fit(["alpha beta", "gamma delta"])
    with pytest.raises(ConfigError, match="min_df"):
        BagOfWords(min_df=5).fit(["alpha beta", "gamma delta"])
    with pytest.raises(InputError, match="not fitted"):
        BagOfWords().transform(["hello"])
    with pytest.raises(InputError, match="one string"):
        BagOfWords().fit("just one string")
