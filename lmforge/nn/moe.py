"""Mixture of experts (Mixtral-style): a router sends each token to its top-k of n feed-forward experts.

Only k experts run per token, so the layer holds n times the parameters of one feed-forward network at
about k times its compute. A load-balancing loss keeps the router from sending everything to a few experts.
"""

from __future__ import annotations

import torch
from torch import nn

from lmforge.nn.feedforward import FeedForward


def load_balancing_loss(router_probs: torch.Tensor, expert_index: torch.Tensor, n_expert: int) -> torch.Tensor:
    """Switch-Transformer balance loss ``n_expert * sum_e f_e * P_e``: ``f_e`` the fraction of routing slots
    given to expert ``e``, ``P_e`` its mean router probability. Equals ``k`` for a perfectly even top-k router.

    ``router_probs (N, E)`` softmax over experts, ``expert_index (N, k)`` chosen experts.

    >>> load_balancing_loss(torch.full((4, 2), 0.5), torch.tensor([[0], [1], [0], [1]]), 2)
    tensor(1.)
    """
    n_tokens = router_probs.shape[0]
    counts = torch.zeros(n_expert, device=router_probs.device, dtype=router_probs.dtype)
    counts.scatter_add_(0, expert_index.reshape(-1), torch.ones_like(expert_index.reshape(-1), dtype=counts.dtype))
    tokens_per_expert = counts / n_tokens  # (E,), sums to k
    return n_expert * (tokens_per_expert * router_probs.mean(dim=0)).sum()


class MoE(nn.Module):
    """``(B, T, C)`` → ``(B, T, C)``: router ``(E, C)``, ``n_expert`` :class:`FeedForward` experts.

    Mixtral's routing: softmax over all experts, keep the top ``k``, renormalise their weights to sum to 1.
    After a forward in training mode, ``aux_loss`` holds :func:`load_balancing_loss` (else None).
    """

    def __init__(
        self, dim: int, hidden: int, n_expert: int, n_expert_per_tok: int = 2, activation: str = "swiglu",
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.n_expert = n_expert
        self.top_k = n_expert_per_tok
        self.router = nn.Linear(dim, n_expert, bias=False)
        self.experts = nn.ModuleList(FeedForward(dim, hidden, activation, bias) for _ in range(n_expert))
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # (N, C), N = B*T tokens
        probs = torch.softmax(self.router(flat).float(), dim=-1)  # (N, E)
        weight, index = probs.topk(self.top_k, dim=-1)  # (N, k) each
        weight = (weight / weight.sum(dim=-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(index == e)  # tokens that chose expert e, and in which of their k slots
            if token.numel() == 0:
                continue
            out.index_add_(0, token, expert(flat[token]) * weight[token, slot, None])
        self.aux_loss = load_balancing_loss(probs, index, self.n_expert) if self.training else None
        return out.view(shape)
