"""Count-based language models over token ids: add-one unigram and interpolated Kneser–Ney n-grams.

The n-gram model (Chen & Goodman's interpolated Kneser–Ney, one discount ``D`` per order) mixes what the longest
context saw with a lower order that counts *in how many different contexts* a word occurred, not how often::

    P(w | h)  = max(c(h w) − D, 0) / c(h)  +  D · N₁₊(h •) / c(h) · P_lower(w | h')          (highest order)
    P_lower   = the same with continuation counts N₁₊(• h' w) in place of c(h' w)              (lower orders)
    P₁(w)     = max(N₁₊(• w) − D, 0) / N₁₊(• •)  +  D · |{w : N₁₊(• w) > 0}| / N₁₊(• •) · 1/V  (ends in uniform)

``h'`` is ``h`` without its oldest token; a context never seen (``c(h) = 0``) passes all its mass to the lower
order. Every distribution sums to one over the ``vocab_size`` ids, unseen ids included.

    lm = NgramLM(NgramConfig(vocab_size=256, order=3)).fit([list(b"abracadabra")])
    lm.log_probs(list(b"abra"))      # natural-log probability of each token given the ones before it
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from lmforge.errors import ConfigError, InputError


@dataclass
class NgramConfig:
    """``order`` 1 is the add-one unigram model; ``order`` ≥ 2 is interpolated Kneser–Ney with ``discount``."""

    vocab_size: int
    order: int = 3
    discount: float = 0.75

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise ConfigError(f"NgramConfig.vocab_size: expected a positive integer, got {self.vocab_size}")
        if self.order < 1:
            raise ConfigError(f"NgramConfig.order: expected >= 1, got {self.order}")
        if not 0.0 < self.discount < 1.0:
            raise ConfigError(f"NgramConfig.discount: expected a value in (0, 1), got {self.discount}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NgramConfig:
        return cls(**d)


class NgramLM:
    """Counts of every k-gram (k ≤ order) of the training sequences; probabilities as in the module docstring.

    Each sequence is its own stream: its first tokens see only the shorter contexts that exist.
    """

    def __init__(self, config: NgramConfig) -> None:
        self.config = config
        self.counts: list[Counter] = []  # counts[k][gram]: c(gram) for grams of k+1 tokens (highest order only)
        self.continuation: list[Counter] = []  # continuation[k][gram]: N₁₊(• gram), grams of k+1 tokens
        self._stats: dict[tuple[bool, int], tuple[dict, dict, dict]] = {}
        self.unigram = np.zeros(0)
        self.n_tokens = 0
        self._cache: dict[tuple, np.ndarray] = {}

    # ------------------------------------------------------------------------------------------- training
    def fit(self, sequences: Iterable[Sequence[int]]) -> NgramLM:
        """Count the grams of ``sequences`` (lists of ids < vocab_size). Returns self."""
        n, V = self.config.order, self.config.vocab_size
        grams: list[Counter] = [Counter() for _ in range(n)]
        unigram = np.zeros(V, dtype=np.float64)
        total = 0
        for seq in sequences:
            seq = [int(t) for t in seq]
            if seq and (min(seq) < 0 or max(seq) >= V):
                raise InputError(f"n-gram: token ids must lie in [0, {V}), got {min(seq)}..{max(seq)}")
            unigram += np.bincount(seq, minlength=V)[:V]
            total += len(seq)
            for k in range(n):
                for i in range(len(seq) - k):
                    grams[k][tuple(seq[i : i + k + 1])] += 1
        if total == 0:
            raise InputError("n-gram: no training tokens")
        self.unigram, self.n_tokens = unigram, total
        # Continuation counts N₁₊(• g): how many distinct tokens precede g = the number of distinct (k+1)-grams
        # that end in g. The highest order keeps raw counts.
        self.counts = grams
        self.continuation = [Counter() for _ in range(n)]
        for k in range(1, n):
            for gram in grams[k]:
                self.continuation[k - 1][gram[1:]] += 1
        # Per level and per kind (raw counts / continuation counts): Σ_w count(h w), N₁₊(h •), and the w seen after h.
        self._stats = {}
        for raw, tables in ((True, self.counts), (False, self.continuation)):
            for k, table in enumerate(tables):
                tot, types, follow = defaultdict(int), defaultdict(int), defaultdict(list)
                for gram, c in table.items():
                    tot[gram[:-1]] += c
                    types[gram[:-1]] += 1
                    follow[gram[:-1]].append(gram[-1])
                self._stats[raw, k] = (dict(tot), dict(types), {h: np.array(ws) for h, ws in follow.items()})
        self._cache = {}
        return self

    # ------------------------------------------------------------------------------------------- probabilities
    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """``(V,)`` probabilities of the next token after ``context`` (only its last order−1 tokens matter)."""
        if self.unigram.size == 0:
            raise InputError("n-gram: the model has not been fitted")
        n, V = self.config.order, self.config.vocab_size
        if n == 1:
            if "add1" not in self._cache:
                self._cache["add1"] = (self.unigram + 1.0) / (self.n_tokens + V)  # Laplace: unseen ids get mass
            return self._cache["add1"]
        context = tuple(int(t) for t in context)[-(n - 1):]
        return self._kn(context, highest=True)

    def _kn(self, h: tuple, highest: bool) -> np.ndarray:
        """``(V,)``: P(· | h) at level len(h)+1; the highest level reads raw counts, lower ones continuation counts
        (a stream's first tokens have a shorter context and use raw counts at that shorter level)."""
        key = (h, highest)
        if key in self._cache:
            return self._cache[key]
        V, D = self.config.vocab_size, self.config.discount
        k = len(h)
        lower = self._kn(h[1:], highest=False) if k > 0 else np.full(V, 1.0 / V)
        table = self.counts[k] if highest else self.continuation[k]
        totals, types, follow = self._stats[highest, k]
        total = totals.get(h, 0)
        if total == 0:
            out = lower  # an unseen context passes all its mass down
        else:
            out = D * types[h] / total * lower
            ws = follow[h]
            out[ws] += np.maximum(np.array([table[(*h, int(w))] for w in ws], dtype=np.float64) - D, 0.0) / total
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = out
        return out

    def log_probs(self, tokens: Sequence[int]) -> np.ndarray:
        """``(T,)`` natural-log probability of each token given the tokens before it in ``tokens``."""
        n = self.config.order
        tokens = [int(t) for t in tokens]
        out = np.empty(len(tokens), dtype=np.float64)
        for i, t in enumerate(tokens):
            if not 0 <= t < self.config.vocab_size:
                raise InputError(f"n-gram: token id {t} outside [0, {self.config.vocab_size})")
            p = self.distribution(tokens[max(0, i - n + 1) : i])[t]
            out[i] = math.log(p)
        return out
