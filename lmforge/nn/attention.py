"""Multi-head attention: self- or cross-attention, causal or bidirectional, with grouped-query heads.

Each query asks "which earlier (or other) tokens matter to me?"; the answer is a softmax over dot products
with the keys, used to average the values. ``n_kv_head < n_head`` shares each key/value head between a group
of query heads (grouped-query attention; ``n_kv_head == 1`` is multi-query attention), which shrinks the KV
cache.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.nn.kv_cache import KVCache
from lmforge.nn.positions import apply_rotary


def explicit_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written out, returning the weights too: ``q (B, H, T, D)``, ``k, v (B, H, S, D)`` →
    ``out (B, H, T, D)``, ``weights (B, H, T, S)``.

    ``mask`` is boolean, broadcastable to ``(B, H, T, S)``, True where a query may look at a key.
    """
    scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(q.shape[-1])  # (B, H, T, S)
    if is_causal:
        t, s = scores.shape[-2:]
        # Query i sits at absolute position s - t + i (earlier positions are in the cache).
        allowed = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(diagonal=s - t)
        scores = scores.masked_fill(~allowed, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).to(q.dtype)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights


class Attention(nn.Module):
    """``x (B, T, C)`` → ``(B, T, C)``.

    Self-attention projects queries, keys and values with one fused matrix ``qkv`` of shape
    ``((H + 2 * H_kv) * D, C)`` (rows: all query heads, then key heads, then value heads). Cross-attention
    (``cross=True``) projects queries from ``x`` with ``q`` and keys/values from ``context (B, S, kv_dim)``
    with the fused ``kv``. ``proj`` maps the concatenated heads back to ``C``.
    """

    def __init__(
        self,
        dim: int,
        n_head: int,
        n_kv_head: int | None = None,
        head_dim: int | None = None,
        *,
        bias: bool = True,
        out_bias: bool | None = None,
        dropout: float = 0.0,
        cross: bool = False,
        kv_dim: int | None = None,
        layer_idx: int = 0,
    ) -> None:
        super().__init__()
        self.n_head = n_head
        self.n_kv_head = n_kv_head or n_head
        self.head_dim = head_dim or dim // n_head
        self.dropout = dropout
        self.cross = cross
        self.layer_idx = layer_idx  # which slot of a shared KVCache this layer writes
        q_out, kv_out = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        if cross:
            self.q = nn.Linear(dim, q_out, bias=bias)
            self.kv = nn.Linear(kv_dim or dim, 2 * kv_out, bias=bias)
        else:
            self.qkv = nn.Linear(dim, q_out + 2 * kv_out, bias=bias)
        self.proj = nn.Linear(q_out, dim, bias=bias if out_bias is None else out_bias)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        kv_cache: KVCache | None = None,
        context: torch.Tensor | None = None,
        return_attn: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(out (B, T, C), weights (B, H, T, S) or None)``.

        ``mask``: boolean, broadcastable to ``(B, 1, T, S)``, True = may attend; a given mask must already
        contain any causal restriction. ``is_causal`` (only used when ``mask`` is None): each query sees only
        keys at its own position or before, without a mask being built.
        ``rope``: ``(cos, sin)`` of shape ``(B, T, D)`` to rotate queries and keys. ``kv_cache``: append this
        step's keys/values and attend to everything cached. ``return_attn``: take the explicit path and also
        return the attention weights.
        """
        b, t, _ = x.shape
        h, hkv, d = self.n_head, self.n_kv_head, self.head_dim
        if self.cross:
            q = self.q(x).view(b, t, h, d).transpose(1, 2)  # (B, H, T, D)
            s = context.shape[1]
            k, v = self.kv(context).view(b, s, 2, hkv, d).permute(2, 0, 3, 1, 4)  # each (B, H_kv, S, D)
        else:
            heads = self.qkv(x).view(b, t, h + 2 * hkv, d).transpose(1, 2)  # (B, H + 2 H_kv, T, D)
            qk = heads[:, : h + hkv]
            if rope is not None:  # queries and keys rotated in one pass: fewer ops per decoding step
                qk = apply_rotary(qk, *rope)
            q, k, v = qk[:, :h], qk[:, h:], heads[:, h + hkv :]  # (B, H, T, D), (B, H_kv, T, D) x2
            if kv_cache is not None:
                k, v = kv_cache.update(self.layer_idx, k, v)  # (B, H_kv, S, D), S = cached + T
        dropout_p = self.dropout if self.training else 0.0
        if return_attn:
            if hkv != h:  # give every query head its group's key/value head
                k, v = k.repeat_interleave(h // hkv, dim=1), v.repeat_interleave(h // hkv, dim=1)
            y, weights = explicit_attention(q, k, v, mask, is_causal and mask is None, dropout_p)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal and mask is None,
                enable_gqa=hkv != h,
            )  # (B, H, T, D)
            weights = None
        y = y.transpose(1, 2).reshape(b, t, h * d)  # (B, T, H*D)
        return self.proj(y), weights


def build_mask(
    padding_mask: torch.Tensor | None, q_len: int, kv_len: int, causal: bool, window: int | None = None
) -> torch.Tensor | None:
    """Boolean attention mask ``(B or 1, 1, T, S)`` (True = may attend) from a padding mask ``(B, S)`` (1 = real
    token, 0 = padding) and/or causality. The ``T`` queries are the last ``T`` of the ``S`` positions.

    ``window`` (sliding-window attention, Mistral / Qwen2): the query at position ``i`` sees only keys ``j`` with
    ``i - window < j``, i.e. the last ``window`` positions including its own.

    Every query may always attend to its own position: a padding query would otherwise see no key at all,
    and a softmax over nothing is NaN (its output is ignored anyway).

    >>> build_mask(torch.tensor([[0, 1, 1]]), 3, 3, causal=True)[0, 0].int()
    tensor([[1, 0, 0],
            [0, 1, 0],
            [0, 1, 1]], dtype=torch.int32)
    >>> build_mask(None, 4, 4, causal=True, window=2)[0, 0].int()
    tensor([[1, 0, 0, 0],
            [1, 1, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 1, 1]], dtype=torch.int32)
    """
    if padding_mask is None and not causal and window is None:
        return None
    device = padding_mask.device if padding_mask is not None else None
    query_pos = torch.arange(kv_len - q_len, kv_len, device=device)[:, None]  # (T, 1)
    key_pos = torch.arange(kv_len, device=device)[None, :]  # (1, S)
    allowed = key_pos <= query_pos if causal else torch.ones(q_len, kv_len, dtype=torch.bool, device=device)
    if window is not None:
        allowed = allowed & (key_pos > query_pos - window)
    allowed = allowed[None, None]  # (1, 1, T, S)
    if padding_mask is not None:
        allowed = allowed & padding_mask.bool()[:, None, None, :]  # (B, 1, T, S)
    return allowed | (key_pos == query_pos)[None, None]


def build_row_mask(lengths: torch.Tensor, q_len: int, kv_len: int, window: int | None = None) -> torch.Tensor:
    """Causal mask ``(B, 1, T, S)`` for rows that hold different numbers of cached positions (continuous
    batching): row ``b``'s ``T`` queries sit at positions ``lengths[b] .. lengths[b] + T - 1`` and see keys up to
    their own position (within ``window`` when given); keys past that are another row's length — stale, masked.

    >>> build_row_mask(torch.tensor([2, 0]), 1, 3)[:, 0, 0].int()
    tensor([[1, 1, 1],
            [1, 0, 0]], dtype=torch.int32)
    """
    query_pos = lengths[:, None] + torch.arange(q_len, device=lengths.device)  # (B, T)
    key_pos = torch.arange(kv_len, device=lengths.device)  # (S,)
    allowed = key_pos <= query_pos[:, :, None]  # (B, T, S)
    if window is not None:
        allowed = allowed & (key_pos > query_pos[:, :, None] - window)
    return allowed[:, None]
