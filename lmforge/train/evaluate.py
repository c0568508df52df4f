"""Perplexity of a causal language model on held-out tokens: what ``lmforge eval`` prints."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lmforge.data.tokens import fixed_windows
from lmforge.errors import ConfigError
from lmforge.train.lm import next_token_loss


@dataclass
class Perplexity:
    """Mean next-token loss (nats/token) over ``tokens`` predicted tokens, and its exponential."""

    loss: float
    perplexity: float
    tokens: int
    windows: int


@torch.inference_mode()
def perplexity(model: nn.Module, tokens: np.ndarray, block_size: int | None = None, batch_size: int = 8,
               max_windows: int = 512) -> Perplexity:
    """Evaluate ``model`` on up to ``max_windows`` non-overlapping ``block_size`` windows spread over ``tokens``.

    ``block_size`` defaults to the model's context; a larger one is refused (the model has no positions
    for it). Every window predicts ``block_size`` tokens, each seeing only the tokens before it in its window.
    """
    context = getattr(getattr(model, "config", None), "block_size", None)
    block_size = block_size or context
    if block_size is None:
        raise ConfigError("block_size: the model does not say its context length; pass --block-size")
    if context is not None and block_size > context:
        raise ConfigError(f"--block-size {block_size} is larger than the model's context (block_size={context})")
    x_all, y_all = fixed_windows(tokens, block_size, max_windows)  # (N, T) each
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(x_all), batch_size):
        x = torch.from_numpy(x_all[start : start + batch_size]).to(device)
        y = torch.from_numpy(y_all[start : start + batch_size]).to(device)
        total += next_token_loss(model(x), y).item() * y.numel()
    model.train(was_training)
    n = int(y_all.size)
    loss = total / n
    return Perplexity(loss=loss, perplexity=math.exp(min(loss, 700.0)), tokens=n, windows=len(x_all))


def unigram_entropy(train_tokens: np.ndarray, eval_tokens: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of ``eval_tokens`` under the add-one unigram distribution of ``train_tokens``:
    the loss of a model that ignores context — the baseline any language model must beat.

    >>> round(unigram_entropy(np.array([0, 0, 1, 1]), np.array([0, 1]), 2), 4)  # uniform over 2: ln 2
    0.6931
    """
    counts = np.bincount(np.asarray(train_tokens, dtype=np.int64), minlength=vocab_size).astype(np.float64) + 1.0
    probs = counts / counts.sum()
    return float(-np.log(probs[np.asarray(eval_tokens, dtype=np.int64)]).mean())
