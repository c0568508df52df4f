"""Next-token prediction (causal language modelling): the task GPT pre-training plugs into the loop."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmforge.data.tokens import BlockSampler, TokenData, fixed_windows
from lmforge.train.loop import unwrap_model


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits (B, T, V)`` against ``targets (B, T)`` — nats per token.

    >>> round(next_token_loss(torch.zeros(1, 2, 4), torch.tensor([[0, 3]])).item(), 4)  # uniform over 4
    1.3863
    """
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))  # (B*T, V)


class NextTokenTask:
    """Random ``block_size`` windows of the training tokens; fixed, evenly spread windows of the validation ones.

    ``loss`` adds the model's MoE load-balancing loss (``aux_loss`` x ``router_aux_loss_coef``) when it has one.
    """

    def __init__(self, data: TokenData, block_size: int, seed: int = 0, max_eval_windows: int = 256) -> None:
        self.block_size = block_size
        self.sampler = BlockSampler(data.train, block_size, seed)
        self.val_x, self.val_y = fixed_windows(data.val, block_size, max_eval_windows)

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.sampler.next_batch(batch_size)
        return torch.from_numpy(x), torch.from_numpy(y)  # (B, T) each

    def eval_batches(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        starts = range(0, len(self.val_x) - batch_size + 1, batch_size) if len(self.val_x) >= batch_size else [0]
        return [(torch.from_numpy(np.ascontiguousarray(self.val_x[s : s + batch_size])),
                 torch.from_numpy(np.ascontiguousarray(self.val_y[s : s + batch_size]))) for s in starts]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        loss = next_token_loss(model(x), y)
        inner = unwrap_model(model)
        aux = getattr(inner, "aux_loss", None)
        if model.training and aux is not None:
            loss = loss + getattr(inner.config, "router_aux_loss_coef", 0.01) * aux
        return loss

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
