"""A preallocated key/value cache for incremental decoding.

Each decoding step writes its new keys/values into a slice of one big tensor per kind instead of
concatenating (which would copy the whole cache every step: quadratic work over a generation).

Continuous batching (``lmforge serve``) needs rows that hold different numbers of positions: each request lives in
its own row ("slot"), joins after a prefill of its own, and leaves when it finishes. :meth:`KVCache.slot` gives a
one-row view to prefill into, :meth:`KVCache.rows` a view of the first rows with per-row lengths (each row writes its
new keys at its own position; the model builds a per-row mask and positions), :meth:`KVCache.move_row` keeps the busy
rows packed at the front when one leaves. Views share the big tensors: nothing is copied.
"""

from __future__ import annotations

import torch

from lmforge.errors import InputError


class KVCache:
    """Keys and values of every layer: ``k, v`` of shape ``(L, B, H_kv, max_len, D)``.

    Protocol (what :class:`~lmforge.nn.attention.Attention` and the models do): at each forward, every layer
    calls ``update(layer, k_new, v_new)`` with ``(B, H_kv, T, D)`` tensors for the ``T`` new positions and
    attends to the returned views ``(B, H_kv, length + T, D)``; after the last layer the model calls
    ``advance(T)``.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_kv_head: int,
        max_len: int,
        head_dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (n_layer, batch_size, n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0  # positions already stored (the same for every layer between forwards)
        # Per-row mode (a view from rows()): positions stored in each row (B,); ``length`` is then the longest row.
        self.lengths: torch.Tensor | None = None
        self.uniform = True  # every row holds ``length`` positions (per-row mode may then take the plain path)

    @classmethod
    def _view(cls, k: torch.Tensor, v: torch.Tensor, max_len: int, length: int) -> KVCache:
        cache = cls.__new__(cls)
        cache.k, cache.v, cache.max_len, cache.length = k, v, max_len, length
        cache.lengths, cache.uniform = None, True
        return cache

    def slot(self, row: int) -> KVCache:
        """An empty one-row cache ``(L, 1, H_kv, max_len, D)`` that writes into row ``row`` of this one: prefill a
        request into its slot with the ordinary (uniform) path, then decode it among others with :meth:`rows`.

        >>> c = KVCache(1, 4, 1, 8, 2); c.slot(2).update(0, torch.ones(1, 1, 3, 2), torch.ones(1, 1, 3, 2))[0].shape
        torch.Size([1, 1, 3, 2])
        >>> int(c.k[0, 2].sum()), int(c.k[0, 1].sum())
        (6, 0)
        """
        return KVCache._view(self.k[:, row : row + 1], self.v[:, row : row + 1], self.max_len, 0)

    def rows(self, lengths: list[int]) -> KVCache:
        """A view of rows ``0 .. len(lengths) - 1`` where row ``b`` already holds ``lengths[b]`` positions. A forward
        through it writes each row's new keys/values right after its own positions; positions past a row's length
        (up to the longest row) hold stale values the model masks out.

        >>> c = KVCache(1, 4, 1, 8, 2); view = c.rows([3, 1])
        >>> view.update(0, torch.ones(2, 1, 1, 2), torch.ones(2, 1, 1, 2))[0].shape  # S = longest + 1
        torch.Size([2, 1, 4, 2])
        >>> c.k[0, :2, 0, :, 0].int().tolist()
        [[0, 0, 0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0]]
        """
        n = len(lengths)
        view = KVCache._view(self.k[:, :n], self.v[:, :n], self.max_len, max(lengths))
        view.lengths = torch.tensor(lengths, dtype=torch.long, device=self.k.device)
        view.uniform = min(lengths) == view.length
        return view

    def move_row(self, src: int, dst: int, length: int) -> None:
        """Copy the first ``length`` positions of row ``src`` into row ``dst`` (packing busy rows after one leaves)."""
        if src != dst:
            self.k[:, dst, :, :length] = self.k[:, src, :, :length]
            self.v[:, dst, :, :length] = self.v[:, src, :, :length]

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v (B, H_kv, T, D)`` after the cached positions; return all keys/values so far."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise InputError(f"KV cache full: {end} positions needed, the cache holds {self.max_len}")
        if not self.uniform:  # per-row: row b's T new positions go to lengths[b] .. lengths[b] + T - 1
            b, h, t, d = k.shape
            index = (self.lengths[:, None] + torch.arange(t, device=k.device))[:, None, :, None].expand(b, h, t, d)
            self.k[layer].scatter_(2, index, k)
            self.v[layer].scatter_(2, index, v)
            return self.k[layer, :, :, :end], self.v[layer, :, :, :end]
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n
        if self.lengths is not None:
            self.lengths += n

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (B,) in that order — beam search re-ranks its hypotheses every step."""
        n = self.length
        self.k[:, :, :, :n] = self.k[:, index, :, :n]
        self.v[:, :, :, :n] = self.v[:, index, :, :n]
