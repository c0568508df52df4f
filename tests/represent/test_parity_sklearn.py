"""BagOfWords against scikit-learn's CountVectorizer / TfidfVectorizer on the built-in corpus."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from lmforge.data.corpus import builtin_documents
from lmforge.represent import BagOfWords
from lmforge.represent.bag_of_words import _FAST_DEFAULT_PATTERN, DEFAULT_TOKEN_PATTERN

OPTIONS = [
    {},
    {"ngram_range": (1, 2)},
    {"ngram_range": (2, 3)},
    {"min_df": 2, "max_df": 0.5},
    {"min_df": 0.1, "max_df": 40},
    {"binary": True},
    {"lowercase": False},
]


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return builtin_documents()


def _same_sparse(a, b, atol=0.0) -> None:
    assert a.shape == b.shape
    diff = abs(a - b)
    assert (diff.max() if diff.nnz else 0.0) <= atol


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_counts_match_count_vectorizer(docs, options):
    ours, theirs = BagOfWords(**options), CountVectorizer(**options)
    X, Y = ours.fit_transform(docs), theirs.fit_transform(docs)
    assert ours.vocabulary_ == theirs.vocabulary_
    assert X.format == "csr" and X.dtype == Y.dtype
    _same_sparse(X, Y)
    assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())
    held_out = ["Assignment statements bind names.", "zzzz unknown words only", ""]
    _same_sparse(ours.transform(held_out), theirs.transform(held_out))


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_tfidf_matches_tfidf_vectorizer(docs, options):
    ours, theirs = BagOfWords(tfidf=True, **options), TfidfVectorizer(**options)
    X, Y = ours.fit_transform(docs), theirs.fit_transform(docs)
    assert ours.vocabulary_ == theirs.vocabulary_
    np.testing.assert_allclose(ours.idf_, theirs.idf_, rtol=1e-12)
    _same_sparse(X, Y, atol=1e-12)
    held_out = ["The for statement iterates over a sequence.", "nothing known here: qqqq", ""]
    _same_sparse(ours.transform(held_out), theirs.transform(held_out), atol=1e-12)


def test_max_features_keeps_the_most_frequent_terms(docs):
    # scikit-learn breaks ties at the cut with an unstable sort; the kept set must agree on every term above the
    # cut, and the matrix must equal scikit-learn's for that vocabulary.
    limit = 500
    ours = BagOfWords(max_features=limit)
    X = ours.fit_transform(docs)
    full = CountVectorizer().fit(docs)
    totals = np.asarray(full.transform(docs).sum(axis=0)).ravel()
    cut = np.sort(totals)[::-1][limit - 1]
    must_keep = {t for t, c in full.vocabulary_.items() if totals[c] > cut}
    kept = set(ours.vocabulary_)
    assert len(kept) == limit and must_keep <= kept
    assert all(totals[full.vocabulary_[t]] >= cut for t in kept)
    reference = CountVectorizer(vocabulary=sorted(kept))
    _same_sparse(X, reference.fit_transform(docs))


def test_callable_tokenizer_matches_sklearn(docs):
    def split_on_space(text: str) -> list[str]:
        return text.split()

    ours = BagOfWords(tokenizer=split_on_space, ngram_range=(1, 2))
    theirs = CountVectorizer(tokenizer=split_on_space, token_pattern=None, ngram_range=(1, 2))
    _same_sparse(ours.fit_transform(docs[:30]), theirs.fit_transform(docs[:30]))
    assert ours.vocabulary_ == theirs.vocabulary_


def test_lmforge_style_tokenizer_is_duck_typed():
    class CharTokenizer:  # the shape of lmforge's Tokenizer: encode -> ids, id_to_token -> str
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [ord(ch) for ch in text if not ch.isspace()]

        def id_to_token(self, i: int) -> str:
            return chr(i)

    bow = BagOfWords(tokenizer=CharTokenizer())
    X = bow.fit_transform(["abba", "cab"])
    assert bow.vocabulary_ == {"a": 0, "b": 1, "c": 2}
    assert X.toarray().tolist() == [[2, 2, 0], [1, 1, 1]]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_fast_default_pattern_matches_sklearn_pattern(text):
    assert re.findall(_FAST_DEFAULT_PATTERN, text) == re.findall(DEFAULT_TOKEN_PATTERN, text)


def test_lmforge_wordpiece_tokenizer_matches_hf_tokenization_in_sklearn(docs, minilm_path):
    # BagOfWords on lmforge's real Tokenizer (all-MiniLM's WordPiece) vs CountVectorizer on HF tokenizers' tokens
    from tokenizers import Tokenizer as HFTokenizer

    from lmforge.tokenizers import load_tokenizer

    ours_tokenizer = load_tokenizer(minilm_path / "tokenizer.json")
    hf = HFTokenizer.from_file(str(minilm_path / "tokenizer.json"))
    hf.no_truncation()  # the file truncates and pads to 128 tokens (for the model); a bag keeps the text only
    hf.no_padding()

    def hf_tokens(text: str) -> list[str]:
        return hf.encode(text, add_special_tokens=False).tokens

    sample = [d[:2000] for d in docs[:20]]
    ours = BagOfWords(tokenizer=ours_tokenizer, lowercase=False)
    theirs = CountVectorizer(tokenizer=hf_tokens, token_pattern=None, lowercase=False)
    _same_sparse(ours.fit_transform(sample), theirs.fit_transform(sample))
    assert ours.vocabulary_ == theirs.vocabulary_
    assert any(term.startswith("##") for term in ours.vocabulary_)  # WordPiece continuation pieces are terms
