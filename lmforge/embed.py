"""Sentence embeddings from an encoder, cosine similarity, and top-k search over a corpus (RAG's retrieval step).

A sentence embedding is one vector per text, pooled from the encoder's per-token hidden states exactly as the
model's sentence-transformers config says (``SentenceConfig``): mean over real tokens (the default), the
``[CLS]`` vector, or the element-wise max; optionally L2-normalised so that a dot product is the cosine.

Speed: texts are tokenized once, sorted by token count and cut into batches, so each batch is padded only to its
own longest text and similar lengths share a batch — almost no compute is spent on padding.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.errors import ConfigError, InputError
from lmforge.fileio import atomic_write_text, read_json
from lmforge.nn.pooling import POOLING_MODES, pool


@dataclass
class SentenceConfig:
    """How token states become one sentence vector (sentence-transformers' ``modules.json``,
    ``sentence_bert_config.json`` and ``1_Pooling/config.json``, in one place).

    ``pooling``: one or more of ``POOLING_MODES``; several are concatenated in the given order.
    ``max_seq_length``: texts are cut to this many tokens (special tokens included); None = the model's limit.
    """

    pooling: tuple[str, ...] = ("mean",)
    normalize: bool = False
    max_seq_length: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.pooling, str):
            self.pooling = (self.pooling,)
        self.pooling = tuple(self.pooling)
        bad = [m for m in self.pooling if m not in POOLING_MODES]
        if bad or not self.pooling:
            raise ConfigError(f"sentence config: pooling must be among {POOLING_MODES}, got {list(self.pooling)}")
        if self.max_seq_length is not None and self.max_seq_length < 2:
            raise ConfigError(f"sentence config: max_seq_length must be >= 2, got {self.max_seq_length}")


@dataclass
class SortedTokens:
    """Texts tokenized once (unpadded, so a huge corpus costs memory only for its real tokens), with ``order``
    listing them longest first; :meth:`batch` pads a slice of that order to its own longest row."""

    ids: list[list[int]]
    types: list[list[int]]
    lengths: np.ndarray  # (N,)
    order: np.ndarray  # (N,) indices, longest first
    pad_id: int

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids, mask, types)`` each ``(len(rows), T)`` with ``T`` the longest of these rows.

        >>> st = SortedTokens([[5, 6, 7], [8]], [[0, 0, 0], [0]], np.array([3, 1]), np.array([0, 1]), pad_id=0)
        >>> st.batch(np.array([1, 0]))[0].tolist()
        [[8, 0, 0], [5, 6, 7]]
        """
        T = int(self.lengths[rows].max())
        ids = np.full((len(rows), T), self.pad_id, dtype=np.int64)
        types = np.zeros((len(rows), T), dtype=np.int64)
        mask = np.zeros((len(rows), T), dtype=np.int64)
        for i, r in enumerate(rows):
            n = self.lengths[r]
            ids[i, :n], types[i, :n], mask[i, :n] = self.ids[r], self.types[r], 1
        return ids, mask, types


def tokenize_sorted(tokenizer: Any, texts: Sequence[str], max_length: int,
                    pairs: Sequence[str] | None = None) -> SortedTokens:
    """Tokenize all texts once (truncated to ``max_length``, special tokens included) and sort them by token
    count, longest first — batches cut from that order carry the least padding."""
    enc = tokenizer.encode_batch(list(texts), list(pairs) if pairs is not None else None, padding=False,
                                 truncation=True, max_length=max_length)
    ids, types = enc["input_ids"], enc["token_type_ids"]
    lengths = np.fromiter((len(r) for r in ids), dtype=np.int64, count=len(ids))
    pad_id = getattr(tokenizer, "pad_token_id", None)
    return SortedTokens(ids, types, lengths, np.argsort(-lengths, kind="stable"), 0 if pad_id is None else pad_id)


def embed(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int = 32,
    config: SentenceConfig | None = None,
    *,
    progress: bool = False,
) -> np.ndarray:
    """Sentence embeddings ``(N, D)`` (float32) of ``texts``, in input order.

    ``model.encode(input_ids, attention_mask, token_type_ids)`` must return hidden states ``(B, T, D)``.
    ``config`` defaults to mean pooling, no normalisation, truncation at the model's ``block_size``.
    """
    import torch

    if isinstance(texts, str):
        raise InputError("embed: texts must be a list of strings, got a single string (wrap it in a list)")
    texts = list(texts)
    if not texts:
        return np.zeros((0, model.config.n_embd), dtype=np.float32)
    if batch_size < 1:
        raise ConfigError(f"embed: batch_size must be >= 1, got {batch_size}")
    config = config or SentenceConfig()
    max_length = min(config.max_seq_length or model.config.block_size, model.config.block_size)
    tokens = tokenize_sorted(tokenizer, texts, max_length)
    out = np.empty((len(texts), model.config.n_embd * len(config.pooling)), dtype=np.float32)
    was_training = model.training
    model.eval()
    starts = range(0, len(texts), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="embed", unit="batch")
    try:
        with torch.inference_mode():
            for start in starts:
                rows = tokens.order[start : start + batch_size]
                b_ids, b_mask, b_types = (torch.from_numpy(a) for a in tokens.batch(rows))  # (B, T) each
                hidden = model.encode(b_ids, b_mask, b_types)  # (B, T, D)
                vectors = pool(hidden, b_mask, config.pooling)
                if config.normalize:
                    vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
                out[rows] = vectors.float().numpy()
    finally:
        model.train(was_training)
    return out


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a (N, D)`` with every row of ``b (M, D)`` → ``(N, M)``.

    >>> cosine_similarity(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])).round(3)
    array([[1.   , 0.   , 0.707]], dtype=float32)
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float32))
    b = np.atleast_2d(np.asarray(b, dtype=np.float32))
    if a.shape[1] != b.shape[1]:
        raise InputError(f"cosine_similarity: vector sizes differ ({a.shape[1]} vs {b.shape[1]})")
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


@dataclass
class Hit:
    """One search result: the corpus line's index, its text and its cosine similarity to the query."""

    index: int
    text: str
    score: float


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest entries of each row of ``scores (Q, N)``, best first.

    >>> top_k(np.array([[0.1, 0.9, 0.5]]), 2)
    (array([[1, 2]]), array([[0.9, 0.5]]))
    """
    k = min(k, scores.shape[1])
    # argpartition is O(N) per row; only the k winners get sorted.
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def search(
    model: Any,
    tokenizer: Any,
    queries: Sequence[str],
    corpus: Sequence[str],
    k: int = 5,
    batch_size: int = 32,
    config: SentenceConfig | None = None,
    corpus_embeddings: np.ndarray | None = None,
) -> list[list[Hit]]:
    """For each query, the ``k`` corpus lines with the highest cosine similarity, best first.

    Pass ``corpus_embeddings`` (from :func:`embed`) to search the same corpus again without re-embedding it.
    """
    if k < 1:
        raise ConfigError(f"search: k must be >= 1, got {k}")
    corpus = list(corpus)
    if not corpus:
        raise InputError("search: the corpus is empty")
    if corpus_embeddings is None:
        corpus_embeddings = embed(model, tokenizer, corpus, batch_size, config)
    elif len(corpus_embeddings) != len(corpus):
        raise InputError(
            f"search: corpus_embeddings has {len(corpus_embeddings)} rows but the corpus has {len(corpus)} lines"
        )
    query_embeddings = embed(model, tokenizer, list(queries), batch_size, config)
    idx, vals = top_k(cosine_similarity(query_embeddings, corpus_embeddings), k)
    return [
        [Hit(int(i), corpus[int(i)], float(s)) for i, s in zip(row_i, row_s, strict=True)]
        for row_i, row_s in zip(idx, vals, strict=True)
    ]


def corpus_fingerprint(corpus: Sequence[str], model_path: str | os.PathLike) -> str:
    """sha256 of the corpus lines and of the model folder's resolved path + ``config.json`` / ``lmforge.json``
    bytes: a cache of corpus embeddings is reused only when both are the same.

    >>> a = corpus_fingerprint(["x", "y"], "m")
    >>> a == corpus_fingerprint(["x", "y"], "m"), a == corpus_fingerprint(["x"], "m")
    (True, False)
    """
    h = hashlib.sha256()
    folder = Path(model_path).resolve()
    h.update(str(folder).encode())
    for name in ("config.json", "lmforge.json"):
        if (folder / name).is_file():
            h.update((folder / name).read_bytes())
    for line in corpus:
        h.update(line.encode("utf-8") + b"\n")
    return h.hexdigest()


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` to exactly ``path``, atomically (never a half-written file; no ``.npy`` appended)."""
    from lmforge.fileio import atomic_open

    with atomic_open(path, "wb") as f:  # np.save to a name would append ".npy" to the temp name
        np.save(f, array)


def cached_corpus_embeddings(
    embed_corpus: Callable[[list[str]], np.ndarray], corpus: Sequence[str], cache: str | os.PathLike | None,
    fingerprint: str,
) -> tuple[np.ndarray, bool]:
    """``(embeddings of corpus, reused)``: read from ``cache`` (a ``.npy`` file with ``CACHE.json`` beside it) when
    that was written for the same ``fingerprint`` (:func:`corpus_fingerprint`), else ``embed_corpus(corpus)``, written
    to ``cache`` when one is named."""
    corpus = list(corpus)
    if cache is not None and Path(cache).is_file():
        meta = Path(str(cache) + ".json")
        if meta.is_file():
            info = read_json(meta)
            if isinstance(info, dict) and info.get("fingerprint") == fingerprint:
                vectors = np.load(cache)
                if len(vectors) == len(corpus):
                    return vectors, True
    vectors = embed_corpus(corpus)
    if cache is not None:
        save_npy(cache, vectors)
        atomic_write_text(str(cache) + ".json", json.dumps({"fingerprint": fingerprint, "lines": len(corpus)}) + "\n")
    return vectors, False
