"""BERT: a bidirectional transformer encoder (Devlin et al., 2018), one readable file.

The flow for one batch::

    input_ids (B, T) ──▶ token + position + token-type embeddings ──▶ LayerNorm ──▶ (B, T, D)
        ──▶ n_layer × post-norm block [x = LN(x + Attn(x)); x = LN(x + MLP(x))] ──▶ hidden (B, T, D)
        ──▶ head: none → hidden (B, T, D) | "mlm" → logits (B, T, V) | "classify" → (B, n_labels)
                  | "tag" → (B, T, n_labels)

Every token attends to every other (non-padding) token: there is no causal mask. In sequence classification one
vector stands for the whole input (``classifier_pooling``): the ``[CLS]`` token's final state passed through the
pooler (dense + tanh) — BERT's and HF's layout — or the mean of the real tokens' final states, which is what
sentence-embedding models (sentence-transformers' mean pooling, e.g. all-MiniLM-L6-v2) were trained to make
meaningful. The
masked-LM head predicts the original token under every position and shares its output matrix with the input
token embeddings (weight tying). Sentence pairs are ``[CLS] a [SEP] b [SEP]`` with token types 0 for ``a`` and
1 for ``b``; they use the same "classify" head.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import nn

from lmforge.errors import ConfigError, InputError
from lmforge.models.state import check_state
from lmforge.models.vocabulary import upgrade_config_dict
from lmforge.nn.block import Block, BlockConfig
from lmforge.nn.pooling import pool

HEADS = ("none", "mlm", "classify", "tag")
CLASSIFIER_POOLINGS = ("cls", "mean")


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder (defaults: BERT-base) and which head sits on top, in lmforge's one config
    vocabulary (the names GPTConfig uses; ``OLD_FIELD_NAMES`` maps the names older lmforge folders wrote).

    ``head``: "none" (bare encoder, returns hidden states), "mlm" (masked-LM logits), "classify" (one label per
    input — also sentence pairs), "tag" (one label per token). ``labels`` names the classes of a head.
    ``classifier_pooling`` (the "classify" head's input): "cls" (pooler over [CLS], HF's
    ``BertForSequenceClassification``) or "mean" (masked mean of the last hidden states; no pooler involved).
    """

    vocab_size: int = 30522
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    ffn_hidden: int = 3072
    block_size: int = 512  # learned absolute positions: the longest input
    type_vocab_size: int = 2
    norm_eps: float = 1e-12
    mlp: str = "gelu"  # "gelu" (exact erf, BERT's) | "gelu_tanh"
    dropout: float = 0.1
    pad_token_id: int = 0
    use_pooler: bool = True
    head: str = "none"
    labels: list[str] = field(default_factory=list)
    classifier_dropout: float | None = None
    classifier_pooling: str = "cls"
    # derived
    head_dim: int = field(init=False)
    n_labels: int = field(init=False)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ConfigError(f"BertConfig.head must be one of {HEADS}, got {self.head!r}")
        if self.mlp not in ("gelu", "gelu_tanh"):
            raise ConfigError(f"BertConfig.mlp must be 'gelu' or 'gelu_tanh', got {self.mlp!r}")
        if self.classifier_pooling not in CLASSIFIER_POOLINGS:
            raise ConfigError(f"BertConfig.classifier_pooling must be one of {CLASSIFIER_POOLINGS}, "
                              f"got {self.classifier_pooling!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"BertConfig: n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.head in ("classify", "tag") and len(self.labels) < 2:
            raise ConfigError(f"BertConfig: head {self.head!r} needs at least 2 labels, got {self.labels!r}")
        self.labels = [str(x) for x in self.labels]
        self.head_dim = self.n_embd // self.n_head
        self.n_labels = len(self.labels)
        if self.classifier_dropout is None:
            self.classifier_dropout = self.dropout

    def to_dict(self) -> dict:
        """The init fields only (what a saved model stores)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if self.__dataclass_fields__[k].init}

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> BertConfig:
        """Build from a dict (e.g. ``lmforge.json``); older names (``d_model``, ``n_layers``, …) are mapped to
        today's, and unknown fields are named in the error.

        >>> BertConfig.from_dict({"d_model": 16, "n_heads": 2, "n_layers": 1}).n_embd
        16
        """
        d = upgrade_config_dict(d, {f.name for f in fields(cls) if f.init})
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown BERT config field(s) {unknown}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"{source}: {e}") from None


class BertEmbeddings(nn.Module):
    """Sum of token, learned absolute position and token-type (segment) embeddings, then LayerNorm + dropout.

    ``input_ids (B, T)`` → ``(B, T, D)``.
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd, padding_idx=cfg.pad_token_id)
        self.positions = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.token_types = nn.Embedding(cfg.type_vocab_size, cfg.n_embd)
        self.norm = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        T = input_ids.shape[1]
        x = self.tokens(input_ids) + self.positions.weight[:T]  # (B, T, D) + (T, D)
        if token_type_ids is None:
            x = x + self.token_types.weight[0]  # all segment A: skip the gather
        else:
            x = x + self.token_types(token_type_ids)
        return self.drop(self.norm(x))


class MaskedLMHead(nn.Module):
    """dense → GELU → LayerNorm → tied decoder (the input token embedding matrix) + bias: ``(.., D)`` → ``(.., V)``."""

    def __init__(self, cfg: BertConfig, token_embedding: nn.Embedding):
        super().__init__()
        self.transform = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.act = nn.GELU(approximate="tanh" if cfg.mlp == "gelu_tanh" else "none")
        self.norm = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        # Tied: predicting token v uses the same vector that represents v at the input (fewer parameters, and the
        # two roles help each other learn). Held by reference, not registered twice in state_dict.
        self._decoder = [token_embedding]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.act(self.transform(hidden)))
        return nn.functional.linear(h, self._decoder[0].weight, self.bias)


class Bert(nn.Module):
    """The BERT encoder with an optional head (see ``BertConfig.head``).

    ``forward(input_ids (B, T), attention_mask (B, T) of 1 = token / 0 = padding, token_type_ids (B, T))``
    returns hidden states ``(B, T, D)`` for a bare encoder, else the head's output.
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg
        self.embed = BertEmbeddings(cfg)
        self.blocks = nn.ModuleList(
            Block(
                BlockConfig(
                    n_embd=cfg.n_embd, n_head=cfg.n_head, ffn_hidden=cfg.ffn_hidden, mlp=cfg.mlp,
                    norm="layer", norm_eps=cfg.norm_eps, dropout=cfg.dropout, prenorm=False,
                ),
                layer_idx=i,
            )
            for i in range(cfg.n_layer)
        )
        self.pooler = nn.Linear(cfg.n_embd, cfg.n_embd) if cfg.use_pooler else None
        self.mlm = MaskedLMHead(cfg, self.embed.tokens) if cfg.head == "mlm" else None
        self.classifier = nn.Linear(cfg.n_embd, cfg.n_labels) if cfg.head in ("classify", "tag") else None
        self.head_drop = nn.Dropout(cfg.classifier_dropout)
        if cfg.head == "classify" and cfg.classifier_pooling == "cls" and self.pooler is None:
            raise ConfigError("BertConfig: the 'classify' head reads the pooler; set use_pooler=True")
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # BERT's initialisation: N(0, 0.02) for matrices, zero biases, unit LayerNorm.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    @classmethod
    def from_state_dict(
        cls, config: BertConfig, state_dict: dict[str, torch.Tensor], source: str = "state dict",
        dtype: torch.dtype | None = None,
    ) -> Bert:
        """Build a model from lmforge-named tensors (the masked-LM decoder is the token embedding, never stored).

        Every parameter must be present with its exact shape; otherwise a :class:`~lmforge.errors.FormatError` names
        ``source`` and the tensor.
        """
        with torch.device("meta"):
            model = cls(config)
        expected = {k: v.shape for k, v in model.state_dict().items()}
        check_state(expected, state_dict, source)
        if dtype is not None:
            state_dict = {k: v.to(dtype) for k, v in state_dict.items()}
        model.load_state_dict(state_dict, assign=True)
        if model.mlm is not None:  # the decoder is held by reference: point it at the assigned embedding
            model.mlm._decoder = [model.embed.tokens]
        return model

    # -- the encoder ------------------------------------------------------------------------------------------
    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden states ``(B, T, D)``; padding positions hold values nobody should read."""
        if input_ids.dim() != 2:
            raise InputError(f"Bert: input_ids must be (batch, time), got shape {tuple(input_ids.shape)}")
        T = input_ids.shape[1]
        if T > self.config.block_size:
            raise InputError(
                f"Bert: sequence length {T} exceeds block_size={self.config.block_size}; truncate the input"
            )
        x = self.embed(input_ids, token_type_ids)  # (B, T, D)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            # (B, 1, 1, T): every query may look at every real key; padding keys are hidden.
            mask = attention_mask.bool()[:, None, None, :]
        for block in self.blocks:
            x, _ = block(x, mask=mask)
        return x

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """BERT's pooler: tanh(dense(hidden of [CLS])): ``(B, T, D)`` → ``(B, D)``."""
        if self.pooler is None:
            raise ConfigError("Bert: this model has no pooler (use_pooler=False)")
        return torch.tanh(self.pooler(hidden[:, 0]))

    def head(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the configured head to hidden states ``(B, T, D)``; ``attention_mask (B, T)`` (1 = token) tells
        mean pooling which positions are real (None: all of them)."""
        kind = self.config.head
        if kind == "none":
            return hidden
        if kind == "mlm":
            return self.mlm(hidden)  # (B, T, V)
        if kind == "classify":
            if self.config.classifier_pooling == "mean":
                sentence = pool(hidden, attention_mask, ["mean"])  # (B, D)
            else:
                sentence = self.pool(hidden)  # (B, D)
            return self.classifier(self.head_drop(sentence))  # (B, n_labels)
        return self.classifier(self.head_drop(hidden))  # "tag": (B, T, n_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        *,
        predict_at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The head's output (see the class docstring). ``predict_at`` (bool ``(B, T)``, "mlm" head only): return
        logits ``(N, V)`` for just the N selected positions — masked-LM training needs ~15% of the (B, T, V)."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        if predict_at is not None:
            if self.mlm is None:
                raise ConfigError("Bert: predict_at needs the 'mlm' head")
            return self.mlm(hidden[predict_at])  # (N, D) -> (N, V)
        return self.head(hidden, attention_mask)

    def with_head(self, head: str, labels: list[str] | None = None, classifier_pooling: str | None = None) -> Bert:
        """A new model that shares this encoder's weights and has a fresh ``head`` (e.g. classify on a pre-trained
        encoder). ``Bert(bert-tiny).with_head("tag", ["O", "B-X"])``; ``classifier_pooling`` None keeps this
        model's."""
        from dataclasses import replace

        cfg = replace(self.config, head=head, labels=list(labels or []),
                      classifier_pooling=classifier_pooling or self.config.classifier_pooling)
        if head == "classify" and cfg.classifier_pooling == "cls":
            cfg.use_pooler = True
        new = Bert(cfg)
        own = {k: v for k, v in self.state_dict().items() if not k.startswith(("classifier.", "mlm."))}
        if self.pooler is None and new.pooler is not None:
            own.update({k: v for k, v in new.state_dict().items() if k.startswith("pooler.")})
        missing, _ = new.load_state_dict(own, strict=False)
        assert all(k.startswith(("classifier.", "mlm.", "pooler.")) for k in missing), missing
        return new

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
