"""A recurrent language model: token embedding → stacked GRU → linear head over the vocabulary, one readable file.

Before attention, this is how neural language models read text (Mikolov et al. 2010 with the GRU of Cho et al.
2014): one state vector per layer is carried left to right, so the prediction at position t depends on every
earlier token, but only through a fixed-size summary::

    input_ids (B, T) ──▶ embedding (B, T, C) ──▶ n_layer × GRU (B, T, C) ──▶ dropout ──▶ head ──▶ logits (B, T, V)

Same call as GPT: ``model(input_ids) -> logits (B, T, V)``, so the training loop's next-token task trains both.
``block_size`` is only the window length it is trained on; a GRU has no position table and reads any length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from lmforge.errors import ConfigError


@dataclass
class GRULMConfig:
    """Hyper-parameters (the shared config vocabulary where it applies)."""

    vocab_size: int = 256
    block_size: int = 128  # training window length
    n_layer: int = 1
    n_embd: int = 256  # embedding width = GRU state width
    dropout: float = 0.0
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"GRULMConfig.{name}: expected a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"GRULMConfig.dropout: expected a value in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GRULMConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"GRULMConfig: unknown fields {sorted(unknown)}")
        return cls(**d)


class GRULM(nn.Module):
    """The GRU language model of the module docstring."""

    def __init__(self, config: GRULMConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.gru = nn.GRU(config.n_embd, config.n_embd, num_layers=config.n_layer, batch_first=True,
                          dropout=config.dropout if config.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # The embeddings feed the GRU's gates directly (no normalisation in between): GPT's std 0.02 leaves every gate
        # at its bias and training stalls at the unigram loss; 0.1 learns at once (tests/models/test_rnn_lm.py).
        nn.init.normal_(self.wte.weight, std=0.1)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        else:
            nn.init.normal_(self.lm_head.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor, state: torch.Tensor | None = None,
                return_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``input_ids (B, T)`` → logits ``(B, T, V)``; ``state (n_layer, B, C)`` carries on from earlier text
        (``return_state`` also returns the new one)."""
        x = self.drop(self.wte(input_ids))  # (B, T, C)
        x, state = self.gru(x, state)  # (B, T, C), (n_layer, B, C)
        logits = self.lm_head(self.drop(x))  # (B, T, V)
        return (logits, state) if return_state else logits

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> int:
        """Training FLOPs per token ≈ 6 × the weights a token multiplies through (forward 2, backward 4):
        per layer 3 gates × (input + recurrent) matrices C × C, plus the head V × C (the embedding is a lookup)."""
        c, v = self.config.n_embd, self.config.vocab_size
        return 6 * (self.config.n_layer * 3 * 2 * c * c + v * c)
