"""A preallocated key/value cache for incremental decoding.

Each decoding step writes its new keys/values into a slice of one big tensor per kind instead of
concatenating (which would copy the whole cache every step: quadratic work over a generation).
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

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v (B, H_kv, T, D)`` after the cached positions; return all keys/values so far."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise InputError(f"KV cache full: {end} positions needed, the cache holds {self.max_len}")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (B,) in that order — beam search re-ranks its hypotheses every step."""
        n = self.length
        self.k[:, :, :, :n] = self.k[:, index, :, :n]
        self.v[:, :, :, :n] = self.v[:, index, :, :n]
