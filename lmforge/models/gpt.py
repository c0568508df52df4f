"""GPT: a decoder-only transformer language model — GPT-2 and the Llama/Mistral/Mixtral family in one file.

token ids ``(B, T)`` → embeddings (+ learned positions) → ``n_layer`` causal pre-norm blocks (RoPE inside
attention for the Llama family) → final norm → LM head → logits ``(B, T, V)``: a score for every vocabulary
entry as the next token after each position.

Long-context switches of the Llama family: ``rope_scaling`` (linear, dynamic NTK, llama3, yarn; see
:mod:`lmforge.nn.positions`) and ``sliding_window`` (Mistral, Qwen2: each query sees only the last ``sliding_window``
positions, in the layers ``layer_types`` marks ``"sliding"``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from lmforge.errors import ConfigError, InputError
from lmforge.models.state import check_state
from lmforge.nn.attention import build_mask, build_row_mask
from lmforge.nn.block import Block, BlockConfig
from lmforge.nn.kv_cache import KVCache
from lmforge.nn.moe import MoE
from lmforge.nn.norms import make_norm
from lmforge.nn.positions import Rotary, check_rope_scaling
from lmforge.nn.quantized import packed_decode_blocks


@dataclass
class GPTConfig:
    """Hyper-parameters. GPT-2 is the default switch setting; Llama is ``norm="rms", mlp="swiglu", pos="rope",
    bias=False``; Mixtral adds ``n_expert=8, n_expert_per_tok=2``. ``None`` fields are derived."""

    vocab_size: int = 50257
    block_size: int = 1024  # context length: the most positions the model attends over
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    n_kv_head: int | None = None  # < n_head: grouped-query attention; 1: multi-query. Default n_head.
    head_dim: int | None = None  # default n_embd // n_head
    ffn_hidden: int | None = None  # default 4 * n_embd (gelu) or Llama's 8/3 * n_embd rounded up to 256 (swiglu)
    norm: str = "layer"  # "layer" | "rms"
    norm_eps: float = 1e-5
    mlp: str = "gelu_tanh"  # "gelu" | "gelu_tanh" | "swiglu"
    pos: str = "learned"  # "learned" | "rope"
    rope_theta: float = 10000.0
    # Longer contexts than trained on: {"rope_type": "linear" | "dynamic" | "llama3" | "yarn", "factor": ..., ...}
    # with Hugging Face's rope_parameters field names (see lmforge.nn.positions.check_rope_scaling). None: plain RoPE.
    rope_scaling: dict | None = None
    sliding_window: int | None = None  # Mistral / Qwen2: a query sees only the last sliding_window positions
    layer_types: list[str] | None = None  # per layer "full" | "sliding"; default: all "sliding" when sliding_window
    bias: bool = True  # biases in every linear layer and LayerNorm
    qkv_bias: bool | None = None  # default: bias (Qwen2 has bias only here)
    tie_embeddings: bool = True  # LM head shares the token-embedding matrix
    n_expert: int = 0  # > 0: mixture-of-experts feed-forward (Mixtral)
    n_expert_per_tok: int = 2
    router_aux_loss_coef: float = 0.01  # weight a trainer gives GPT.aux_loss (Mixtral's default)
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"GPTConfig.{name}: expected a positive integer, got {value!r}")
        if self.pos not in ("learned", "rope"):
            raise ConfigError(f"GPTConfig.pos: expected 'learned' or 'rope', got {self.pos!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"GPTConfig.dropout: expected a value in [0, 1), got {self.dropout!r}")
        if self.ffn_hidden is None and self.mlp == "swiglu":
            self.ffn_hidden = 256 * math.ceil(8 * self.n_embd / 3 / 256)
        block = self.block_config()  # validates and derives the shared fields
        self.n_kv_head, self.head_dim, self.ffn_hidden, self.qkv_bias = (
            block.n_kv_head, block.head_dim, block.ffn_hidden, block.qkv_bias,
        )
        if self.pos == "rope" and self.head_dim % 2:
            raise ConfigError(f"GPTConfig.head_dim must be even for rope, got {self.head_dim}")
        if self.rope_scaling and self.pos != "rope":
            raise ConfigError("GPTConfig.rope_scaling: only meaningful with pos='rope'")
        self.rope_scaling = check_rope_scaling(self.rope_scaling, self.block_size, "GPTConfig.rope_scaling")
        if self.sliding_window is not None:
            if not isinstance(self.sliding_window, int) or self.sliding_window <= 0:
                raise ConfigError(f"GPTConfig.sliding_window: expected a positive integer, got {self.sliding_window!r}")
            if self.layer_types is None:
                self.layer_types = ["sliding"] * self.n_layer
        if self.layer_types is not None:
            if len(self.layer_types) != self.n_layer or not set(self.layer_types) <= {"full", "sliding"}:
                raise ConfigError(f"GPTConfig.layer_types: expected {self.n_layer} entries of 'full' or 'sliding', "
                                  f"got {self.layer_types!r}")
            if "sliding" in self.layer_types and self.sliding_window is None:
                raise ConfigError("GPTConfig.layer_types has 'sliding' layers but sliding_window is not set")
            self.layer_types = list(self.layer_types)

    def block_config(self) -> BlockConfig:
        return BlockConfig(
            n_embd=self.n_embd, n_head=self.n_head, n_kv_head=self.n_kv_head, head_dim=self.head_dim,
            ffn_hidden=self.ffn_hidden, mlp=self.mlp, norm=self.norm, norm_eps=self.norm_eps, bias=self.bias,
            qkv_bias=self.qkv_bias, dropout=self.dropout, prenorm=True, n_expert=self.n_expert,
            n_expert_per_tok=self.n_expert_per_tok,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> GPTConfig:
        """Build from a dict (e.g. ``lmforge.json``), naming unknown fields in the error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown GPT config field(s) {unknown}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"{source}: {e}") from None


class GPT(nn.Module):
    """Decoder-only language model. Parameters: ``wte`` (V, C), ``wpe`` (block_size, C; learned positions only),
    ``blocks`` (``n_layer`` × :class:`~lmforge.nn.block.Block`), ``norm_f``, ``lm_head`` (V, C; tied to ``wte``
    when ``tie_embeddings``)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        if c.pos == "learned":
            self.wpe = nn.Embedding(c.block_size, c.n_embd)
        else:
            self.rotary = Rotary(c.head_dim, c.rope_theta, c.rope_scaling)
        # Which blocks attend through the sliding window (a tuple of bools, read once per forward).
        self.sliding_layers = tuple(kind == "sliding" for kind in (c.layer_types or ["full"] * c.n_layer))
        self.drop = nn.Dropout(c.dropout)
        block_cfg = c.block_config()
        self.blocks = nn.ModuleList(Block(block_cfg, layer_idx=i) for i in range(c.n_layer))
        self.norm_f = make_norm(c.norm, c.n_embd, c.norm_eps, c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.aux_loss: torch.Tensor | None = None  # summed MoE load-balancing loss of the last training forward
        self.reset_parameters()
        if c.tie_embeddings:
            self.lm_head.weight = self.wte.weight

    def reset_parameters(self) -> None:
        """GPT-2's init: N(0, 0.02) weights, zero biases, and residual-output projections scaled by
        1/sqrt(2 * n_layer) so the residual stream's variance does not grow with depth."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") and name.startswith("blocks."):  # attn.proj, mlp.proj, experts' proj
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.config.n_layer))

    @classmethod
    def from_state_dict(
        cls, config: GPTConfig, state_dict: dict[str, torch.Tensor], source: str = "state dict",
        dtype: torch.dtype | None = None,
    ) -> GPT:
        """Build a model directly from lmforge-named tensors, without a random init first (fast for big models).

        Every parameter must be present with its exact shape (``lm_head.weight`` may be left out when tied);
        otherwise a :class:`~lmforge.errors.FormatError` names ``source`` and the tensor.
        """
        with torch.device("meta"):
            model = cls(config)
        expected = {k: v.shape for k, v in model.state_dict().items()}
        if config.tie_embeddings:
            expected.pop("lm_head.weight", None)
            state_dict = {k: v for k, v in state_dict.items() if k != "lm_head.weight"}
        check_state(expected, state_dict, source)
        if dtype is not None:
            state_dict = {k: v.to(dtype) for k, v in state_dict.items()}
        model.load_state_dict(state_dict, strict=False, assign=True)
        if config.tie_embeddings:
            model.lm_head.weight = model.wte.weight
        if config.pos == "rope":  # non-persistent buffer: rebuild it on the real device
            model.rotary = Rotary(config.head_dim, config.rope_theta, config.rope_scaling).to(model.wte.weight.device)
        return model

    def new_kv_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """A preallocated cache for incremental decoding of ``batch_size`` rows, ``max_len`` positions (rows of
        different lengths: :meth:`KVCache.rows <lmforge.nn.kv_cache.KVCache.rows>`)."""
        c = self.config
        p = self.wte.weight
        return KVCache(
            c.n_layer, batch_size, c.n_kv_head, max_len or c.block_size, c.head_dim, dtype=p.dtype, device=p.device,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        *,
        kv_cache: KVCache | None = None,
        last_only: bool = False,
        return_attn: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """``input_ids (B, T)`` → logits ``(B, T, V)`` (``(B, 1, V)`` with ``last_only``).

        ``attention_mask (B, S)``: 1 for real tokens, 0 for padding, covering cached plus new positions
        (``S = kv_cache.length + T``). ``position_ids (B, T)`` default to ``offset .. offset + T - 1`` where
        ``offset`` is the number of cached positions — per row for a cache whose rows hold different lengths
        (``kv_cache.rows(lengths)``: continuous batching), which also brings its own per-row causal mask. With
        ``return_attn`` the explicit attention path runs and ``(logits, [weights (B, H, T, S) per layer])`` is
        returned.
        """
        b, t = input_ids.shape
        offset = kv_cache.length if kv_cache is not None else 0
        if offset + t > self.config.block_size:
            raise InputError(
                f"sequence of {offset + t} tokens is longer than the model's context window "
                f"(block_size={self.config.block_size})"
            )
        per_row = kv_cache is not None and not getattr(kv_cache, "uniform", True)
        if position_ids is None and per_row:
            position_ids = kv_cache.lengths[:, None] + torch.arange(t, device=input_ids.device)  # (B, T)
        elif position_ids is None:
            position_ids = torch.arange(offset, offset + t, device=input_ids.device)[None].expand(b, t)
        x = self.wte(input_ids)  # (B, T, C)
        rope = None
        if self.config.pos == "learned":
            x = x + self.wpe(position_ids)
        else:
            rope = self.rotary(position_ids, x.dtype)  # cos, sin: (B, T, D)
        x = self.drop(x)
        s = offset + t
        window = self.config.sliding_window
        if per_row:
            mask, is_causal = build_row_mask(kv_cache.lengths, t, s), False
        elif attention_mask is None and (offset == 0 or t == 1):
            # Fast path (training, unpadded prompts, single-step decode): no mask tensor at all.
            mask, is_causal = None, t > 1
        else:
            mask, is_causal = build_mask(attention_mask, t, s, causal=True), False
        sliding = (mask, is_causal)  # a window wider than everything seen so far changes nothing
        if window is not None and s > window:
            sliding = (build_row_mask(kv_cache.lengths, t, s, window) if per_row
                       else build_mask(attention_mask, t, s, causal=True, window=window), False)
        attentions = []
        packed = None
        if t == 1 and kv_cache is not None and not return_attn and not self.training:
            # One token per row: packed blocks decode in one numba call each (None otherwise).
            windows = tuple(window if slides else 0 for slides in self.sliding_layers)
            packed = packed_decode_blocks(self.blocks, x, rope, kv_cache, windows, attention_mask)
        if packed is not None:
            x, attentions = packed, [None] * len(self.blocks)
        else:
            for block, slides in zip(self.blocks, self.sliding_layers, strict=True):
                block_mask, block_causal = sliding if slides else (mask, is_causal)
                x, weights = block(x, mask=block_mask, is_causal=block_causal, rope=rope, kv_cache=kv_cache,
                                   return_attn=return_attn)
                attentions.append(weights)
        if kv_cache is not None:
            kv_cache.advance(t)
        if self.training and self.config.n_expert:
            self.aux_loss = sum(blk.mlp.aux_loss for blk in self.blocks if isinstance(blk.mlp, MoE))
        if last_only:
            x = x[:, -1:]
        logits = self.lm_head(self.norm_f(x))  # (B, T, V)
        return (logits, attentions) if return_attn else logits

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
