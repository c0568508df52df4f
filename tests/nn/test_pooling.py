"""Pooling (lmforge.nn.pooling) against plain torch reductions over the real tokens."""

from __future__ import annotations

import torch

from lmforge.nn.pooling import pool


def test_pool_ignores_padding():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 3, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    mean = pool(hidden, mask, ["mean"])
    torch.testing.assert_close(mean[0], hidden[0, :3].mean(0))
    torch.testing.assert_close(mean[1], hidden[1].mean(0))
    torch.testing.assert_close(pool(hidden, mask, ["max"])[0], hidden[0, :3].amax(0))
    torch.testing.assert_close(pool(hidden, mask, ["mean_sqrt_len_tokens"])[0], hidden[0, :3].sum(0) / 3**0.5)
    both = pool(hidden, mask, ["cls", "mean"])
    assert both.shape == (2, 6) and torch.equal(both[:, :3], hidden[:, 0])
