"""word2vec: dense word vectors learned by telling real (word, neighbour) pairs from random ones.

Skip-gram (``sg=1``) trains each context word's vector to predict the centre word; CBOW (``sg=0``) trains the mean
of the context vectors to predict it. Both use negative sampling: the true word against ``negative`` words drawn
from the unigram distribution raised to ``ns_exponent`` (0.75). Frequent words are randomly dropped
(``sample``, gensim's formula), the window shrinks at random to 1..``window`` (nearer words count more) and the
learning rate decays linearly from ``alpha`` to ``min_alpha`` over all epochs.

Parameter names and meanings are gensim's ``Word2Vec``; ``model.wv`` is a :class:`KeyedVectors`. Two engines:
``"numba"`` (per-pair SGD on CPU threads, as word2vec.c) and ``"torch"`` (large batches with sparse
``index_add_`` updates, for GPUs); ``engine="auto"`` picks torch when CUDA is available, numba otherwise.
Unlike gensim, the loss is always the true mean negative-sampling loss per training example of each epoch.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from pathlib import Path

import numpy as np

from lmforge.errors import ConfigError, InputError
from lmforge.represent.keyed_vectors import KeyedVectors

MAX_SENTENCE_WORDS = 10000  # longer sentences are cut into pieces of this many words (gensim truncates them)


@dataclass
class Word2VecConfig:
    """Hyper-parameters (gensim's names). Derived: ``engine_used`` (the resolved engine)."""

    vector_size: int = 100
    window: int = 5
    min_count: int = 5
    sg: int = 1
    negative: int = 5
    ns_exponent: float = 0.75
    sample: float = 1e-3
    alpha: float = 0.025
    min_alpha: float = 0.0001
    epochs: int = 5
    seed: int = 1
    workers: int = 3
    cbow_mean: int = 1
    hs: int = 0
    compute_loss: bool = True
    engine: str = "auto"
    batch_size: int = 8192
    device: str | None = None
    engine_used: str = field(init=False, default="")

    def __post_init__(self) -> None:
        positive_ints = ("vector_size", "window", "min_count", "epochs", "workers", "batch_size")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
        if self.negative < 1:
            raise ConfigError(f"negative: expected >= 1 noise words (negative sampling is the only objective), "
                              f"got {self.negative}")
        if self.hs:
            raise ConfigError("hs: hierarchical softmax is not implemented; use negative sampling (hs=0)")
        if self.sg not in (0, 1):
            raise ConfigError(f"sg: expected 1 (skip-gram) or 0 (CBOW), got {self.sg!r}")
        if not 0 < self.alpha or not 0 <= self.min_alpha <= self.alpha:
            raise ConfigError(f"alpha/min_alpha: expected 0 <= min_alpha <= alpha, got {self.alpha}, {self.min_alpha}")
        if self.sample < 0:
            raise ConfigError(f"sample: expected >= 0 (0 disables subsampling), got {self.sample}")
        if self.engine not in ("auto", "numba", "torch"):
            raise ConfigError(f"engine: expected 'auto', 'numba' or 'torch', got {self.engine!r}")
        self.engine_used = self.engine if self.engine != "auto" else _auto_engine()


def _auto_engine() -> str:
    try:
        import torch

        return "torch" if torch.cuda.is_available() else "numba"
    except ImportError:
        return "numba"


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """Chance of keeping each occurrence of a word (gensim's subsampling formula), float32 ``(V,)``.

    With ``t = sample * total``: ``p = (sqrt(count / t) + 1) * t / count``, capped at 1.

    >>> [round(float(p), 3) for p in keep_probabilities(np.array([10000, 1]), 1e-3)]
    [0.033, 1.0]
    """
    counts = counts.astype(np.float64)
    if sample == 0:
        return np.ones(len(counts), dtype=np.float32)
    threshold = sample * counts.sum() if sample < 1.0 else sample * (3 + math.sqrt(5)) / 2
    prob = (np.sqrt(counts / threshold) + 1) * (threshold / counts)
    return np.minimum(prob, 1.0).astype(np.float32)


def noise_distribution(counts: np.ndarray, exponent: float) -> np.ndarray:
    """Probability of drawing each word as a noise word: ``count**exponent``, normalised, float64 ``(V,)``.

    >>> noise_distribution(np.array([16, 1]), 0.5).tolist()
    [0.8, 0.2]
    """
    weights = counts.astype(np.float64) ** exponent
    return weights / weights.sum()


def split_long(bounds: np.ndarray, limit: int = MAX_SENTENCE_WORDS) -> np.ndarray:
    """Sentence boundaries with every sentence longer than ``limit`` cut into pieces; empty ones dropped.

    >>> split_long(np.array([0, 0, 5, 6]), limit=2).tolist()
    [0, 2, 4, 5, 6]
    """
    out = [0]
    for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=False):
        out.extend(range(start + limit, end, limit))
        if end > out[-1]:
            out.append(end)
    return np.asarray(out, dtype=np.int64)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash (seeds the per-block random generators)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)).astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class LineSentences:
    """Sentences from text files: one sentence per line, tokens separated by whitespace (gensim's LineSentence).

    Re-iterable: every pass re-reads the files.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], lowercase: bool = False):
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        for p in self.paths:
            if not p.is_file():
                raise InputError(f"{p}: no such corpus file")
        self.lowercase = lowercase

    def __iter__(self) -> Iterator[list[str]]:
        for path in self.paths:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    words = (line.lower() if self.lowercase else line).split()
                    if words:
                        yield words


@dataclass
class EncodedCorpus:
    """The corpus as vocabulary ids: ``ids`` (N,) int32 and ``bounds`` (S + 1,) int64 sentence starts."""

    ids: np.ndarray
    bounds: np.ndarray
    raw_words: int


class Word2Vec:
    """Train word vectors (gensim's API): ``Word2Vec(sentences, vector_size=100, window=5, ...)``.

    ``sentences``: an iterable of token lists (re-iterable: it is read twice), or ``corpus_file``: a text file with
    one whitespace-tokenized sentence per line. After training, ``model.wv`` holds the vectors and
    ``model.loss_history`` the mean loss per example of each epoch.

    >>> docs = [["the", "cat", "sat"], ["the", "dog", "sat"]] * 50
    >>> model = Word2Vec(docs, vector_size=8, min_count=1, epochs=2, workers=1, engine="numba")
    >>> model.wv["cat"].shape, len(model.loss_history)
    ((8,), 2)
    """

    def __init__(
        self,
        sentences: Iterable[Sequence[str]] | None = None,
        *,
        corpus_file: str | os.PathLike | None = None,
        vector_size: int = 100,
        window: int = 5,
        min_count: int = 5,
        sg: int = 1,
        negative: int = 5,
        ns_exponent: float = 0.75,
        sample: float = 1e-3,
        alpha: float = 0.025,
        min_alpha: float = 0.0001,
        epochs: int = 5,
        seed: int = 1,
        workers: int = 3,
        cbow_mean: int = 1,
        hs: int = 0,
        compute_loss: bool = True,
        engine: str = "auto",
        batch_size: int = 8192,
        device: str | None = None,
        progress: bool = False,
    ):
        self.config = Word2VecConfig(
            vector_size=vector_size, window=window, min_count=min_count, sg=sg, negative=negative,
            ns_exponent=ns_exponent, sample=sample, alpha=alpha, min_alpha=min_alpha, epochs=epochs, seed=seed,
            workers=workers, cbow_mean=cbow_mean, hs=hs, compute_loss=compute_loss, engine=engine,
            batch_size=batch_size, device=device,
        )
        self.progress = progress
        self.wv = KeyedVectors([], np.zeros((0, vector_size), dtype=np.float32))
        self.syn1neg = np.zeros((0, vector_size), dtype=np.float32)
        self.loss_history: list[float] = []
        self.words_per_second: float = 0.0
        if sentences is not None and corpus_file is not None:
            raise ConfigError("give either sentences or corpus_file, not both")
        if corpus_file is not None:
            sentences = LineSentences(corpus_file)
        if sentences is not None:
            if isinstance(sentences, Iterator):
                sentences = list(sentences)  # a one-shot generator: keep it, it is read twice
            self.build_vocab(sentences)
            self.train(sentences)

    def __getattr__(self, name: str):
        # gensim users read hyper-parameters off the model (model.window, model.sg, ...)
        config = self.__dict__.get("config")
        if config is not None and hasattr(config, name):
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------------------------------------ vocabulary
    def build_vocab(self, sentences: Iterable[Sequence[str]]) -> None:
        """Count the words; keep those seen ``min_count`` times, most frequent first (ties: first seen first)."""
        counter: Counter = Counter()
        raw = 0
        for i, sentence in enumerate(sentences):
            if isinstance(sentence, str):
                raise InputError(
                    f"sentences[{i}]: expected a list of tokens, got a string (split it, e.g. text.split())"
                )
            counter.update(sentence)
            raw += len(sentence)
        if raw == 0:
            raise InputError("sentences: empty corpus (no tokens to learn from)")
        words = [w for w, c in sorted(counter.items(), key=lambda item: -item[1]) if c >= self.config.min_count]
        if not words:
            top = counter.most_common(1)[0][1]
            raise InputError(
                f"min_count={self.config.min_count}: no word occurs that often (the most frequent occurs {top} "
                f"times in {raw} tokens); lower min_count or give more text"
            )
        counts = np.array([counter[w] for w in words], dtype=np.int64)
        rng = np.random.default_rng(self.config.seed)
        dim = self.config.vector_size
        vectors = ((rng.random((len(words), dim), dtype=np.float32) - 0.5) / dim).astype(np.float32)
        self.wv = KeyedVectors(words, vectors, counts)
        self.syn1neg = np.zeros((len(words), dim), dtype=np.float32)
        self.corpus_total_words = raw

    def encode(self, sentences: Iterable[Sequence[str]]) -> EncodedCorpus:
        """Map tokens to ids, dropping out-of-vocabulary tokens (before windows are formed, as word2vec.c)."""
        lengths: list[int] = []
        pieces: list[np.ndarray] = []
        lookup = self.wv.key_to_index.get
        batch: list[Sequence[str]] = []
        batch_words = 0

        def flush() -> None:
            flat = np.fromiter(map(lookup, chain.from_iterable(batch), repeat(-1)), dtype=np.int32, count=batch_words)
            pieces.append(flat)

        for sentence in sentences:
            if isinstance(sentence, str):
                raise InputError("sentences: expected lists of tokens, got a string (split it, e.g. text.split())")
            batch.append(sentence)
            lengths.append(len(sentence))
            batch_words += len(sentence)
            if batch_words >= 1_000_000:
                flush()
                batch, batch_words = [], 0
        flush()
        raw_ids = np.concatenate(pieces)
        known = raw_ids >= 0
        raw_bounds = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=raw_bounds[1:])
        kept_before = np.zeros(len(raw_ids) + 1, dtype=np.int64)
        np.cumsum(known, out=kept_before[1:])
        bounds = np.unique(kept_before[raw_bounds])  # sentences emptied by OOV removal vanish
        return EncodedCorpus(raw_ids[known], split_long(bounds), int(len(raw_ids)))

    # -------------------------------------------------------------------------------------------------- training
    def train(self, sentences: Iterable[Sequence[str]], epochs: int | None = None) -> list[float]:
        """Train on ``sentences`` for ``epochs`` (default: the configured number). Returns the per-epoch losses."""
        if not len(self.wv):
            raise InputError("Word2Vec: build_vocab() must run before train()")
        cfg = self.config
        epochs = epochs or cfg.epochs
        corpus = self.encode(sentences)
        if len(corpus.ids) == 0:
            raise InputError("sentences: no in-vocabulary words to train on")
        keep = keep_probabilities(self.wv.counts, cfg.sample)
        noise = noise_distribution(self.wv.counts, cfg.ns_exponent)
        bar = _progress_bar(self.progress, epochs * corpus.raw_words)
        started = time.perf_counter()
        if cfg.engine_used == "numba":
            losses = self._train_numba(corpus, keep, noise, epochs, bar)
        else:
            losses = self._train_torch(corpus, keep, noise, epochs, bar)
        elapsed = time.perf_counter() - started
        if bar is not None:
            bar.close()
        self.words_per_second = epochs * corpus.raw_words / max(elapsed, 1e-9)
        self.wv.fill_norms()
        self.loss_history.extend(losses)
        return losses

    def get_latest_training_loss(self) -> float:
        """Mean negative-sampling loss per example over the last epoch (gensim returns a raw running sum)."""
        return self.loss_history[-1] if self.loss_history else 0.0

    def _train_numba(self, corpus: EncodedCorpus, keep, noise, epochs: int, bar) -> list[float]:
        import numba

        from lmforge.represent._w2v_numba import build_alias_table, sigmoid_tables, train_slice

        cfg = self.config
        n_sentences = len(corpus.bounds) - 1
        n_words = len(corpus.ids)
        slices = int(np.clip(n_words // 1_000_000, 1, 50))
        blocks_per_slice = max(1, min(cfg.workers * 4, n_sentences // slices))
        # block b starts at the first sentence that begins at or after its equal share of the words
        targets = np.linspace(0, n_words, slices * blocks_per_slice + 1)
        block_starts = np.searchsorted(corpus.bounds[:-1], targets[:-1], side="left").astype(np.int64)
        block_starts = np.append(block_starts, n_sentences)
        noise_table = build_alias_table(noise)
        tables = sigmoid_tables()
        threads_before = numba.get_num_threads()
        numba.set_num_threads(max(1, min(cfg.workers, numba.config.NUMBA_NUM_THREADS)))
        losses = []
        try:
            for epoch in range(epochs):
                loss_sum, examples = 0.0, 0
                for s in range(slices):
                    starts = block_starts[s * blocks_per_slice : (s + 1) * blocks_per_slice + 1]
                    n_blocks = len(starts) - 1
                    block_ids = np.arange(n_blocks, dtype=np.uint64) + np.uint64(s * blocks_per_slice)
                    states = _splitmix64(
                        block_ids ^ _splitmix64(np.uint64(cfg.seed) * np.uint64(1_000_003) + np.uint64(epoch))
                    )
                    loss_out = np.zeros(n_blocks)
                    examples_out = np.zeros(n_blocks, dtype=np.int64)
                    words_out = np.zeros(n_blocks, dtype=np.int64)
                    train_slice(
                        self.wv.vectors, self.syn1neg, corpus.ids, corpus.bounds, starts, keep, noise_table, tables,
                        cfg.window, cfg.negative, cfg.sg, cfg.cbow_mean, cfg.alpha, cfg.min_alpha,
                        epoch * n_words, epochs * n_words, states, cfg.compute_loss, loss_out, examples_out,
                        words_out,
                    )
                    loss_sum += float(loss_out.sum())
                    examples += int(examples_out.sum())
                    if bar is not None:
                        bar.update(corpus.raw_words // slices)
                losses.append(loss_sum / max(examples, 1))
                if bar is not None:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}")
        finally:
            numba.set_num_threads(threads_before)
        return losses

    def _train_torch(self, corpus: EncodedCorpus, keep, noise, epochs: int, bar) -> list[float]:
        from lmforge.represent._w2v_torch import train_torch

        return train_torch(self, corpus, keep, noise, epochs, bar)

    # ---------------------------------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Save the word vectors (lmforge safetensors); training state is not kept."""
        self.wv.save(path)


def _progress_bar(enabled: bool, total_words: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total_words, unit="word", unit_scale=True, desc="word2vec", smoothing=0.1)
