"""The transformer block: attention then feed-forward, each wrapped in a residual connection and a norm.

Pre-norm (GPT-2, Llama: ``x + f(norm(x))``) keeps an untouched residual path and trains deep stacks stably;
post-norm (the original Transformer, BERT: ``norm(x + f(x))``) normalises after adding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lmforge.errors import ConfigError
from lmforge.nn.attention import Attention
from lmforge.nn.feedforward import ACTIVATIONS, FeedForward
from lmforge.nn.kv_cache import KVCache
from lmforge.nn.moe import MoE
from lmforge.nn.norms import make_norm


@dataclass
class BlockConfig:
    """Everything one block needs. ``None`` fields are derived in ``__post_init__``.

    ``mlp``: ``"gelu"`` (exact, BERT) | ``"gelu_tanh"`` (GPT-2) | ``"swiglu"`` (Llama); ``norm``: ``"layer"`` |
    ``"rms"``; ``bias`` switches the biases of every linear layer and LayerNorm, ``qkv_bias`` overrides it
    for the attention input projection alone (Qwen-style). ``n_expert > 0`` replaces the feed-forward network
    with a mixture of ``n_expert`` experts, ``n_expert_per_tok`` used per token. ``cross_attention`` adds
    a second attention over an encoder's output (``context``) between self-attention and feed-forward.
    """

    n_embd: int
    n_head: int
    n_kv_head: int | None = None  # default: n_head (plain multi-head attention)
    head_dim: int | None = None  # default: n_embd // n_head
    ffn_hidden: int | None = None  # default: 4 * n_embd
    mlp: str = "gelu_tanh"
    norm: str = "layer"
    norm_eps: float = 1e-5
    bias: bool = True
    qkv_bias: bool | None = None  # default: bias
    dropout: float = 0.0
    prenorm: bool = True
    cross_attention: bool = False
    n_expert: int = 0
    n_expert_per_tok: int = 2

    def __post_init__(self) -> None:
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.head_dim is None:
            if self.n_embd % self.n_head:
                raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
            self.head_dim = self.n_embd // self.n_head
        if self.ffn_hidden is None:
            self.ffn_hidden = 4 * self.n_embd
        if self.qkv_bias is None:
            self.qkv_bias = self.bias
        if self.n_head % self.n_kv_head:
            raise ConfigError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        if self.mlp not in ACTIVATIONS:
            raise ConfigError(f"mlp: expected one of {ACTIVATIONS}, got {self.mlp!r}")
        if self.norm not in ("layer", "rms"):
            raise ConfigError(f"norm: expected 'layer' or 'rms', got {self.norm!r}")
        if self.n_expert and not 0 < self.n_expert_per_tok <= self.n_expert:
            raise ConfigError(f"n_expert_per_tok must be in 1..n_expert ({self.n_expert}), got {self.n_expert_per_tok}")


class Block(nn.Module):
    """``x (B, T, C)`` → ``(B, T, C)``. Sub-modules: ``norm_attn, attn, [norm_cross, cross_attn,] norm_mlp, mlp``
    (``mlp`` is a :class:`FeedForward` or a :class:`MoE`). In post-norm the norms follow their sub-layer."""

    def __init__(self, cfg: BlockConfig, layer_idx: int = 0) -> None:
        super().__init__()
        self.prenorm = cfg.prenorm
        c = cfg.n_embd
        self.norm_attn = make_norm(cfg.norm, c, cfg.norm_eps, cfg.bias)
        self.attn = Attention(
            c, cfg.n_head, cfg.n_kv_head, cfg.head_dim, bias=cfg.qkv_bias, out_bias=cfg.bias,
            dropout=cfg.dropout, layer_idx=layer_idx,
        )
        if cfg.cross_attention:
            self.norm_cross = make_norm(cfg.norm, c, cfg.norm_eps, cfg.bias)
            self.cross_attn = Attention(
                c, cfg.n_head, cfg.n_kv_head, cfg.head_dim, bias=cfg.qkv_bias, out_bias=cfg.bias,
                dropout=cfg.dropout, cross=True,
            )
        self.norm_mlp = make_norm(cfg.norm, c, cfg.norm_eps, cfg.bias)
        if cfg.n_expert:
            self.mlp = MoE(c, cfg.ffn_hidden, cfg.n_expert, cfg.n_expert_per_tok, cfg.mlp, cfg.bias)
        else:
            self.mlp = FeedForward(c, cfg.ffn_hidden, cfg.mlp, cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        kv_cache: KVCache | None = None,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        return_attn: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(x (B, T, C), self-attention weights (B, H, T, S) or None)``; arguments as in
        :meth:`Attention.forward`, ``context_mask`` being the boolean ``(B, 1, 1, S)`` mask for cross-attention."""
        attn_kw = dict(mask=mask, is_causal=is_causal, rope=rope, kv_cache=kv_cache, return_attn=return_attn)
        if self.prenorm:
            a, weights = self.attn(self.norm_attn(x), **attn_kw)
            x = x + self.drop(a)
            if hasattr(self, "cross_attn"):
                c, _ = self.cross_attn(self.norm_cross(x), mask=context_mask, context=context)
                x = x + self.drop(c)
            x = x + self.drop(self.mlp(self.norm_mlp(x)))
        else:
            a, weights = self.attn(x, **attn_kw)
            x = self.norm_attn(x + self.drop(a))
            if hasattr(self, "cross_attn"):
                c, _ = self.cross_attn(x, mask=context_mask, context=context)
                x = self.norm_cross(x + self.drop(c))
            x = self.norm_mlp(x + self.drop(self.mlp(x)))
        return x, weights
