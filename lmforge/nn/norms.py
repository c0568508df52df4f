"""Normalisation layers: LayerNorm (GPT-2, BERT) and RMSNorm (Llama family).

Both normalise each token's vector ``(..., C)`` on its own; they differ in whether the mean is removed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.errors import ConfigError


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x**2) + eps) * weight`` — LayerNorm without centring and without a bias.

    >>> RMSNorm(2)(torch.tensor([[3.0, 4.0]])).detach()  # rms = sqrt((9 + 16) / 2)
    tensor([[0.8485, 1.1314]])
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics in float32 even under bf16 autocast: the mean of squares loses precision otherwise
        # (Llama's reference implementation does the same).
        return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def make_norm(kind: str, dim: int, eps: float, bias: bool = True) -> nn.Module:
    """The norm named by a config switch: ``"layer"`` → ``nn.LayerNorm``, ``"rms"`` → :class:`RMSNorm`.

    >>> make_norm("rms", 8, 1e-5)
    RMSNorm(8, eps=1e-05)
    """
    if kind == "layer":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if kind == "rms":
        return RMSNorm(dim, eps=eps)
    raise ConfigError(f"norm: expected 'layer' or 'rms', got {kind!r}")
