"""The position-wise feed-forward network: a GELU MLP (GPT-2, BERT) or a gated SwiGLU (Llama family)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.errors import ConfigError

ACTIVATIONS = ("gelu", "gelu_tanh", "swiglu", "relu", "silu")  # relu: the original Transformer; silu: Marian's "swish"


class FeedForward(nn.Module):
    """``(B, T, C)`` → ``(B, T, C)`` through a hidden layer of width ``hidden``.

    ``activation``: ``"gelu"`` (exact erf GELU, BERT), ``"gelu_tanh"`` (the tanh approximation, GPT-2's
    ``gelu_new``) or ``"swiglu"`` (``down(silu(gate(x)) * up(x))``; gate and up share one fused matrix
    ``gate_up`` of shape ``(2 * hidden, C)``, gate rows first, so one matmul serves both).
    """

    def __init__(self, dim: int, hidden: int, activation: str = "gelu_tanh", bias: bool = True) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"mlp: expected one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        if activation == "swiglu":
            self.gate_up = nn.Linear(dim, 2 * hidden, bias=bias)
        else:
            self.fc = nn.Linear(dim, hidden, bias=bias)
        self.proj = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation == "swiglu":
            gate, up = self.gate_up(x).chunk(2, dim=-1)  # each (B, T, hidden)
            return self.proj(F.silu(gate) * up)
        if self.activation == "relu":
            return self.proj(F.relu(self.fc(x)))
        if self.activation == "silu":
            return self.proj(F.silu(self.fc(x)))
        approximate = "tanh" if self.activation == "gelu_tanh" else "none"
        return self.proj(F.gelu(self.fc(x), approximate=approximate))
