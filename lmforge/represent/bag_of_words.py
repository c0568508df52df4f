"""Bag-of-words: a text becomes a sparse row of token counts (or tf-idf weights) over a fixed vocabulary.

The defaults equal scikit-learn's ``CountVectorizer`` (lower-case, token pattern ``(?u)\\b\\w\\w+\\b``, columns in
alphabetical order of the terms), so a matrix built here can be swapped for one built there. Tokens may instead
come from any callable ``str -> list[str]`` or from an lmforge ``Tokenizer`` (anything with
``encode(text, add_special_tokens=False)`` and ``id_to_token(id)``).

Why it is fast: no Python-level loop runs per token. Every term gets an id from ``dict.setdefault`` driven by
``map`` (a C loop), the (document, column) pairs go to numpy arrays through ``np.fromiter``, and scipy's
COO -> CSR conversion adds up repeated pairs into counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain, count, islice, repeat
from typing import Any

import numpy as np
import scipy.sparse as sp

from lmforge.errors import ConfigError, InputError

DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
# The same matches as DEFAULT_TOKEN_PATTERN (a maximal run of word characters is bounded by \b on both sides, and
# the greedy \w\w+ always takes a whole run), but ~25% faster in `re` because no \b assertions are tested.
_FAST_DEFAULT_PATTERN = r"\w\w+"


def _count_matrix(lengths: np.ndarray, columns: np.ndarray, n_terms: int) -> sp.csr_matrix:
    """CSR counts ``(n_docs, n_terms)`` from each document's term columns, concatenated (-1 = unknown, dropped).

    >>> _count_matrix(np.array([3, 1]), np.array([2, 0, 2, -1]), 3).toarray().tolist()
    [[1, 0, 2], [0, 0, 0]]
    """
    rows = np.repeat(np.arange(len(lengths)), lengths)
    known = columns >= 0
    index_dtype = np.int32 if max(len(columns), n_terms, len(lengths)) < 2**31 else np.int64
    entry_rows, entry_columns = rows[known].astype(index_dtype), columns[known].astype(index_dtype)
    ones = np.ones(len(entry_rows), dtype=np.int64)
    matrix = sp.coo_matrix((ones, (entry_rows, entry_columns)), shape=(len(lengths), n_terms)).tocsr()
    matrix.sum_duplicates()  # canonical: sorted columns, one entry per (row, column)
    return matrix


def word_ngrams(tokens: list[str], ngram_range: tuple[int, int]) -> list[str]:
    """All n-grams for n in ``ngram_range`` (inclusive), shorter n first, joined by one space.

    >>> word_ngrams(["a", "b", "c"], (1, 2))
    ['a', 'b', 'c', 'a b', 'b c']
    """
    low, high = ngram_range
    if high == 1:
        return tokens
    out = list(tokens) if low == 1 else []
    for n in range(max(low, 2), min(high, len(tokens)) + 1):
        out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return out


def tokenizer_function(tokenizer: Any, token_pattern: str) -> Callable[[str], list[str]]:
    """Turn the ``tokenizer`` argument into a function ``str -> list[str]``.

    >>> tokenizer_function(None, r"\\w+")("hi there")
    ['hi', 'there']
    """
    if tokenizer is None:
        try:
            pattern = _FAST_DEFAULT_PATTERN if token_pattern == DEFAULT_TOKEN_PATTERN else token_pattern
            return re.compile(pattern).findall
        except re.error as e:
            raise ConfigError(f"token_pattern: {token_pattern!r} is not a valid regular expression ({e})") from None
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "id_to_token"):
        # An lmforge Tokenizer: its token strings (e.g. "Ġworld", "##ing") become the vocabulary terms.
        def from_ids(text: str) -> list[str]:
            return [tokenizer.id_to_token(i) for i in tokenizer.encode(text, add_special_tokens=False)]

        return from_ids
    if callable(tokenizer):
        return tokenizer
    raise ConfigError(
        f"tokenizer: expected None, a callable str -> list[str], or an lmforge Tokenizer "
        f"(with encode/id_to_token); got {type(tokenizer).__name__}"
    )


@dataclass
class BagOfWords:
    """Vectorizer: ``fit`` learns the vocabulary (and idf), ``transform`` maps texts to a CSR matrix.

    Rows are documents, columns are terms in alphabetical order (``vocabulary_`` maps term -> column).
    ``tfidf=True`` gives scikit-learn's ``TfidfVectorizer`` defaults: smooth idf ``ln((1+n)/(1+df)) + 1``,
    rows scaled to unit L2 norm. ``min_df``/``max_df`` are document counts (int) or fractions (float);
    ``max_features`` keeps the terms with the largest total counts (ties: alphabetical order).

    >>> bow = BagOfWords(); X = bow.fit_transform(["the cat sat", "the cat ran"])
    >>> sorted(bow.vocabulary_.items()), X.toarray().tolist()
    ([('cat', 0), ('ran', 1), ('sat', 2), ('the', 3)], [[1, 0, 1, 1], [1, 1, 0, 1]])
    """

    tokenizer: Any = None
    lowercase: bool = True
    ngram_range: tuple[int, int] = (1, 1)
    min_df: int | float = 1
    max_df: int | float = 1.0
    max_features: int | None = None
    binary: bool = False
    tfidf: bool = False
    token_pattern: str = DEFAULT_TOKEN_PATTERN
    vocabulary_: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    idf_: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        low, high = self.ngram_range
        if not (1 <= low <= high):
            raise ConfigError(f"ngram_range: expected (min_n, max_n) with 1 <= min_n <= max_n, got {self.ngram_range}")
        for name in ("min_df", "max_df"):
            value = getattr(self, name)
            if isinstance(value, float) and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}: a float must be a fraction in [0, 1], got {value}")
            if isinstance(value, int) and value < 0:
                raise ConfigError(f"{name}: an int must be a document count >= 0, got {value}")
        if self.max_features is not None and self.max_features < 1:
            raise ConfigError(f"max_features: expected a positive int or None, got {self.max_features}")
        self._tokenize = tokenizer_function(self.tokenizer, self.token_pattern)

    # ----------------------------------------------------------------------------------------------- analysis
    def analyze(self, text: str) -> list[str]:
        """The terms of one document: lower-case (if asked), tokenize, then n-grams.

        >>> BagOfWords(ngram_range=(1, 2)).analyze("New York, new york")
        ['new', 'york', 'new', 'york', 'new york', 'york new', 'new york']
        """
        if not isinstance(text, str):
            raise InputError(f"documents: expected str, got {type(text).__name__}")
        if self.lowercase:
            text = text.lower()
        tokens = self._tokenize(text)
        return word_ngrams(tokens if isinstance(tokens, list) else list(tokens), self.ngram_range)

    def _columns(self, documents: Iterable[str], lookup: Callable, ids: Iterable) -> tuple[np.ndarray, np.ndarray]:
        """``lookup(term, next(ids))`` for every term of every document, and the number of terms per document.

        Documents are analyzed in chunks so the term strings of one chunk are freed before the next is read.
        Returns (values (n_terms_total,) int64, lengths (n_docs,) int64).
        """
        if isinstance(documents, str):
            raise InputError("documents: expected a list of strings, got one string (wrap it in a list)")
        documents = iter(documents)
        values, lengths = [], []
        while chunk := list(islice(documents, 4096)):
            term_lists = [self.analyze(doc) for doc in chunk]
            chunk_lengths = np.fromiter(map(len, term_lists), dtype=np.int64, count=len(term_lists))
            total = int(chunk_lengths.sum())
            values.append(np.fromiter(map(lookup, chain.from_iterable(term_lists), ids), dtype=np.int64, count=total))
            lengths.append(chunk_lengths)
        if not lengths:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(values), np.concatenate(lengths)

    def build_analyzer(self) -> Callable[[str], list[str]]:
        """scikit-learn-style accessor: the function that turns a document into its terms."""
        return self.analyze

    # ------------------------------------------------------------------------------------------------ fitting
    def fit(self, documents: Iterable[str]) -> BagOfWords:
        self.fit_transform(documents)
        return self

    def fit_transform(self, documents: Iterable[str]) -> sp.csr_matrix:
        """Learn the vocabulary (and idf) from ``documents`` and return their matrix ``(n_docs, n_terms)``."""
        # each term's id is the position of its first occurrence: setdefault keeps the first position it is given
        first_position: dict[str, int] = {}
        positions, lengths = self._columns(documents, first_position.setdefault, count())
        if len(lengths) == 0:
            raise InputError("documents: empty corpus (no documents to learn a vocabulary from)")
        total = len(positions)
        if total == 0:
            raise InputError("documents: empty vocabulary; the documents contain no tokens")
        n_terms = len(first_position)
        vocabulary = dict(zip(sorted(first_position), range(n_terms), strict=True))  # columns: alphabetical
        # column of each term, in order of first occurrence (C loops: map, fromiter)
        column_of_term = np.fromiter(map(vocabulary.__getitem__, first_position), dtype=np.int64, count=n_terms)
        column_at_first = np.empty(total, dtype=np.int64)
        column_at_first[np.fromiter(first_position.values(), dtype=np.int64, count=n_terms)] = column_of_term
        counts = _count_matrix(lengths, column_at_first[positions], n_terms)
        counts, vocabulary = self._prune(counts, vocabulary, len(lengths))
        self.vocabulary_ = vocabulary
        if self.binary:
            counts.data.fill(1)
        if self.tfidf:
            df = np.bincount(counts.indices, minlength=counts.shape[1])
            self.idf_ = np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0
            return self._weight(counts)
        return counts

    def transform(self, documents: Iterable[str]) -> sp.csr_matrix:
        """Matrix ``(n_docs, n_terms)`` of ``documents`` over the fitted vocabulary (unknown terms are dropped)."""
        if not self.vocabulary_:
            raise InputError("BagOfWords: not fitted yet; call fit() or fit_transform() first")
        columns, lengths = self._columns(documents, self.vocabulary_.get, repeat(-1))
        counts = _count_matrix(lengths, columns, len(self.vocabulary_))
        if self.binary:
            counts.data.fill(1)
        return self._weight(counts) if self.tfidf else counts

    def get_feature_names_out(self) -> np.ndarray:
        """Terms in column order (as scikit-learn's method of the same name)."""
        names = np.empty(len(self.vocabulary_), dtype=object)
        for term, column in self.vocabulary_.items():
            names[column] = term
        return names

    # ---------------------------------------------------------------------------------------------- internals
    def _prune(
        self, counts: sp.csr_matrix, vocabulary: dict[str, int], n_docs: int
    ) -> tuple[sp.csr_matrix, dict[str, int]]:
        """Drop terms outside ``[min_df, max_df]`` documents, then keep the ``max_features`` most frequent."""
        high = self.max_df if isinstance(self.max_df, int) else self.max_df * n_docs
        low = self.min_df if isinstance(self.min_df, int) else self.min_df * n_docs
        if high < low:
            raise ConfigError(f"max_df ({self.max_df}) corresponds to fewer documents than min_df ({self.min_df})")
        if high >= n_docs and low <= 1 and self.max_features is None:
            return counts, vocabulary
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        keep = (df >= low) & (df <= high)
        if self.max_features is not None and keep.sum() > self.max_features:
            total = np.asarray(counts.sum(axis=0)).ravel()
            candidates = np.flatnonzero(keep)
            best = candidates[np.argsort(-total[candidates], kind="stable")[: self.max_features]]
            keep = np.zeros_like(keep)
            keep[best] = True
        kept_columns = np.flatnonzero(keep)
        if len(kept_columns) == 0:
            raise ConfigError("min_df/max_df/max_features: after pruning no terms remain; lower min_df or raise max_df")
        new_column = np.cumsum(keep) - 1
        vocabulary = {t: int(new_column[c]) for t, c in vocabulary.items() if keep[c]}
        return counts[:, kept_columns].tocsr(), vocabulary

    def _weight(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """tf-idf: scale each column by its idf, then each row to unit L2 norm (empty rows stay zero)."""
        weighted = counts.astype(np.float64)
        weighted.data *= self.idf_[weighted.indices]
        row_lengths = np.diff(weighted.indptr)
        row_of_entry = np.repeat(np.arange(weighted.shape[0]), row_lengths)
        row_norms = np.sqrt(np.bincount(row_of_entry, weights=weighted.data**2, minlength=weighted.shape[0]))
        row_norms[row_norms == 0] = 1.0  # an empty row stays all-zero
        weighted.data /= row_norms[row_of_entry]
        return weighted
