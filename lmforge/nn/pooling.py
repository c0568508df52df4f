"""Pooling: token states ``(B, T, D)`` → one vector per sequence, over its real (non-padding) tokens.

The one implementation behind sentence embeddings (:mod:`lmforge.embed`, as a sentence-transformers config says) and
BERT's mean-pooled classifier head (:mod:`lmforge.models.bert`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, modes: Sequence[str] = ("mean",)) -> torch.Tensor:
    """Pool ``hidden (B, T, D)`` over real tokens (``attention_mask (B, T)``, 1 = real; None = all real) →
    ``(B, D·k)``, the ``k`` modes concatenated in order. An all-padding row gives zeros for the means, not NaN.

    >>> h = torch.tensor([[[1.0], [3.0], [100.0]]]); m = torch.tensor([[1, 1, 0]])
    >>> pool(h, m, ["mean"]), pool(h, m, ["max"]), pool(h, m, ["cls"])
    (tensor([[2.]]), tensor([[3.]]), tensor([[1.]]))
    """
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif attention_mask is None:
            if mode == "max":
                out.append(hidden.amax(dim=1))
            else:
                out.append(hidden.mean(dim=1) if mode == "mean" else hidden.sum(dim=1) / hidden.shape[1] ** 0.5)
        else:
            mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
            if mode == "max":
                out.append(hidden.masked_fill(mask == 0, float("-inf")).amax(dim=1))
            else:
                summed = (hidden * mask).sum(dim=1)  # (B, D)
                count = mask.sum(dim=1).clamp(min=1e-9)  # (B, 1)
                out.append(summed / count if mode == "mean" else summed / count.sqrt())
    return out[0] if len(out) == 1 else torch.cat(out, dim=-1)
