"""Position information: learned tables (GPT-2, BERT), fixed sinusoids (the original Transformer), and
rotary embeddings (RoPE, Llama family), which rotate query/key pairs by a position-dependent angle.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """The fixed ``(n_positions, dim)`` table of "Attention is all you need": sin on even, cos on odd columns.

    >>> sinusoidal_table(2, 4)
    tensor([[0.0000, 1.0000, 0.0000, 1.0000],
            [0.8415, 0.5403, 0.0100, 0.9999]])
    """
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]  # (N, 1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (dim/2,)
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: dim // 2])
    return table


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position vectors, looked up by position id: ``(B, T)`` → ``(B, T, C)``."""

    def __init__(self, n_positions: int, dim: int) -> None:
        super().__init__()
        # Not a parameter and not saved: it is a pure function of the shape.
        self.register_buffer("table", sinusoidal_table(n_positions, dim), persistent=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return self.table[position_ids]


def rope_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """Rotation speeds of the ``head_dim / 2`` channel pairs: ``theta ** (-2i / head_dim)``.

    >>> rope_inv_freq(4, 10000.0)
    tensor([1.0000, 0.0100])
    """
    # Computed exactly as transformers does (int64 arange → float) so the angles match bit for bit.
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


class Rotary(nn.Module):
    """RoPE angles for given positions: ``position_ids (B, T)`` → ``cos, sin`` each ``(B, T, D)``.

    Uses the "rotate half" layout of the Hugging Face Llama checkpoints: channel ``i`` pairs with ``i + D/2``.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        self.register_buffer("inv_freq", rope_inv_freq(head_dim, theta), persistent=False)

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - nn.Module's signature
        # Keep the frequencies in float32 when the model is cast to bf16/fp16: rounded frequencies would
        # shift every angle at long positions.
        out = super()._apply(fn, recurse)
        self.inv_freq = rope_inv_freq(self.head_dim, self.theta).to(self.inv_freq.device)
        return out

    def forward(
        self, position_ids: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq  # (B, T, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, D)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] → [-x2, x1]`` on the last dimension.

    >>> rotate_half(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    tensor([-3., -4.,  1.,  2.])
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys ``x (B, H, T, D)`` by the angles ``cos, sin (B, T, D)``."""
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, D): same angle for every head
    return x * cos + rotate_half(x) * sin
