"""The encoder–decoder Transformer of "Attention Is All You Need" (and Hugging Face's MarianMT, the same shape).

source ids ``(B, S)`` → embeddings (× sqrt(C) with ``scale_embedding``) + sinusoidal positions → ``n_encoder_layer``
bidirectional blocks → memory ``(B, S, C)``.  target ids ``(B, T)`` → embeddings + positions → ``n_layer`` decoder
blocks (causal self-attention, cross-attention to the memory, feed-forward) → LM head (+ ``logits_bias``) →
logits ``(B, T, V)``. Post-norm as in the paper (``prenorm=True`` switches to pre-norm, with a final norm on each
side); ``share_embeddings`` uses one table for source and target; ``tie_embeddings`` makes the LM head the target
embedding. Blocks are :class:`lmforge.nn.block.Block`, the same parts as GPT and BERT.

Decoding protocol (:mod:`lmforge.generate`): ``encode`` once per input; ``new_cache`` computes every decoder layer's
cross-attention keys/values once and allocates the self-attention KV cache; ``decode`` runs new target tokens
against that cache. ``forward`` (training) is the same three calls without a self-attention cache.

Padding costs only its place in attention: inside the blocks the real positions travel as rows ``(N, C)``
(:func:`pack`), the norms, projections, feed-forward layers and (with ``target_mask``) the LM head see only
them, and :func:`unpack` spreads them back to ``(B, T)`` for the attention itself (:func:`run_block`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmforge.errors import ConfigError, InputError
from lmforge.nn.attention import Attention, explicit_attention
from lmforge.nn.block import Block, BlockConfig
from lmforge.nn.encoder_decoder_cache import EncoderDecoderCache
from lmforge.nn.kv_cache import KVCache
from lmforge.nn.norms import make_norm


@dataclass
class TransformerConfig:
    """Hyper-parameters in lmforge's one config vocabulary; ``None`` fields are derived.

    ``vocab_size``: target vocabulary; ``src_vocab_size``: source vocabulary (default ``vocab_size``; must be equal
    with ``share_embeddings``). ``block_size``: the most positions on either side. ``n_layer``: decoder blocks;
    ``n_encoder_layer``: encoder blocks (default ``n_layer``).
    """

    vocab_size: int = 8000
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 512
    ffn_hidden: int | None = None  # default 4 * n_embd
    mlp: str = "relu"  # "relu" (the paper) | "silu" (Marian's "swish") | "gelu" | "gelu_tanh"
    norm: str = "layer"
    norm_eps: float = 1e-5
    pos: str = "sinusoidal"
    bias: bool = True
    dropout: float = 0.1
    tie_embeddings: bool = True  # LM head = target embedding
    src_vocab_size: int | None = None
    n_encoder_layer: int | None = None
    share_embeddings: bool = True  # one embedding table for source and target
    prenorm: bool = False  # the paper and Marian: post-norm
    scale_embedding: bool = True  # embeddings x sqrt(n_embd), as in the paper
    logits_bias: bool = False  # a fixed (1, V) bias added to the logits (Marian's final_logits_bias)
    label_smoothing: float = 0.1  # training loss only
    pad_token_id: int = 0
    eos_token_id: int = 2
    decoder_start_token_id: int = 1
    init_std: float | None = None  # default n_embd ** -0.5 (see Transformer.reset_parameters)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"TransformerConfig.{name}: expected a positive integer, got {value!r}")
        if self.src_vocab_size is None:
            self.src_vocab_size = self.vocab_size
        if self.n_encoder_layer is None:
            self.n_encoder_layer = self.n_layer
        if self.share_embeddings and self.src_vocab_size != self.vocab_size:
            raise ConfigError(f"TransformerConfig.share_embeddings needs src_vocab_size == vocab_size, got "
                              f"{self.src_vocab_size} and {self.vocab_size}")
        if self.pos != "sinusoidal":
            raise ConfigError(f"TransformerConfig.pos: only 'sinusoidal' is supported, got {self.pos!r}")
        if self.mlp == "swiglu":
            raise ConfigError("TransformerConfig.mlp: expected relu | silu | gelu | gelu_tanh, got 'swiglu'")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"TransformerConfig.dropout: expected a value in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"TransformerConfig.label_smoothing: expected [0, 1), got {self.label_smoothing!r}")
        if self.n_embd % 2:
            raise ConfigError(f"TransformerConfig.n_embd must be even (sinusoidal positions), got {self.n_embd}")
        for name in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ConfigError(f"TransformerConfig.{name}: expected an id in 0..{self.vocab_size - 1}, "
                                  f"got {value!r}")
        self.ffn_hidden = self.block_config(cross=False).ffn_hidden
        if self.init_std is None:
            self.init_std = self.n_embd**-0.5
        if not isinstance(self.init_std, (int, float)) or isinstance(self.init_std, bool) or self.init_std <= 0:
            raise ConfigError(f"TransformerConfig.init_std: expected a positive number, got {self.init_std!r}")

    def block_config(self, cross: bool) -> BlockConfig:
        return BlockConfig(
            n_embd=self.n_embd, n_head=self.n_head, ffn_hidden=self.ffn_hidden, mlp=self.mlp, norm=self.norm,
            norm_eps=self.norm_eps, bias=self.bias, dropout=self.dropout, prenorm=self.prenorm, cross_attention=cross,
        )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> TransformerConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"{source}: unknown Transformer config field(s) {unknown}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"{source}: {e}") from None


def marian_sinusoids(n_positions: int, dim: int) -> torch.Tensor:
    """The fixed position table with sines in the first half of the columns and cosines in the second (Marian's
    layout; the paper interleaves them — the same features in another column order). Computed in float64.

    >>> marian_sinusoids(2, 4)
    tensor([[0.0000, 0.0000, 1.0000, 1.0000],
            [0.8415, 0.0100, 0.5403, 0.9999]])
    """
    position = np.arange(n_positions, dtype=np.float64)[:, None]  # (N, 1)
    freq = np.power(10000.0, -2 * np.arange(dim // 2, dtype=np.float64) / dim)  # (dim/2,)
    angles = position * freq  # (N, dim/2)
    return torch.from_numpy(np.concatenate([np.sin(angles), np.cos(angles)], axis=1)).float()


def pack(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """The kept positions of ``x (B, T, C)`` as rows ``(N, C)``, row-major; every position without ``keep (B, T)``.

    >>> pack(torch.arange(4.0).view(2, 2, 1), torch.tensor([[True, True], [True, False]])).flatten().tolist()
    [0.0, 1.0, 2.0]
    """
    return x.reshape(-1, x.shape[-1]) if keep is None else x[keep]


def unpack(rows: torch.Tensor, keep: torch.Tensor | None, b: int, t: int) -> torch.Tensor:
    """Rows ``(N, C)`` back to ``(B, T, C)``, zeros at the positions ``keep (B, T)`` leaves out.

    >>> unpack(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[True, True], [True, False]]), 2, 2).flatten()
    tensor([1., 2., 3., 0.])
    """
    if keep is None:
        return rows.view(b, t, rows.shape[-1])
    out = rows.new_zeros(b, t, rows.shape[-1])
    out[keep] = rows
    return out


def self_attend(
    attn: Attention, x: torch.Tensor, keep: torch.Tensor | None, b: int, t: int, mask: torch.Tensor | None,
    is_causal: bool, kv_cache: KVCache | None,
) -> torch.Tensor:
    """Self-attention of rows ``x (N, C)`` (the ``keep (B, T)`` positions of a ``(B, T)`` batch): projections on
    the rows only, the attention itself on ``(B, H, T, D)`` (padding zero, masked or after every real position).
    ``mask``: boolean ``(B, 1, T, S)``-broadcastable, True = may attend. → ``(N, C)``."""
    h, d = attn.n_head, attn.head_dim
    heads = unpack(attn.qkv(x), keep, b, t).view(b, t, 3 * h, d).transpose(1, 2)  # (B, 3H, T, D)
    q, k, v = heads.split(h, dim=1)  # each (B, H, T, D); qkv's rows: query heads, key heads, value heads
    if kv_cache is not None:
        k, v = kv_cache.update(attn.layer_idx, k, v)  # (B, H, S, D), S = cached + T
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=attn.dropout if attn.training else 0.0,
                                       is_causal=is_causal)  # (B, H, T, D)
    return attn.proj(pack(y.transpose(1, 2).reshape(b, t, h * d), keep))  # (N, C)


def cross_keys_values(attn: Attention, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A cross-attention layer's keys and values of the encoder output: ``memory (B, S, C)`` →
    ``k, v (B, H, S, D)``, contiguous: computed once per input and read at every decoding step, where strided
    keys/values make CPU attention ~1.7x slower (batch 16)."""
    b, s, _ = memory.shape
    k, v = attn.kv(memory).view(b, s, 2, attn.n_kv_head, attn.head_dim).permute(2, 0, 3, 1, 4)
    return k.contiguous(), v.contiguous()


def cross_attend(
    attn: Attention, x: torch.Tensor, keep: torch.Tensor | None, b: int, t: int, k: torch.Tensor, v: torch.Tensor,
    mask: torch.Tensor, return_weights: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Queries from rows ``x (N, C)`` (the ``keep (B, T)`` positions) against precomputed ``k, v (B, H, S, D)``;
    ``mask (B, 1, 1, S)`` True = real source token. → ``(out (N, C), weights (B, H, T, S) or None)``."""
    q = unpack(attn.q(x), keep, b, t).view(b, t, attn.n_head, attn.head_dim).transpose(1, 2)  # (B, H, T, D)
    dropout_p = attn.dropout if attn.training else 0.0
    if return_weights:
        y, weights = explicit_attention(q, k, v, mask, dropout_p=dropout_p)
    else:
        y, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p), None
    return attn.proj(pack(y.transpose(1, 2).reshape(b, t, attn.n_head * attn.head_dim), keep)), weights  # (N, C)


def run_block(
    block: Block, x: torch.Tensor, keep: torch.Tensor | None, b: int, t: int, *, mask: torch.Tensor | None = None,
    is_causal: bool = False, kv_cache: KVCache | None = None,
    cross: tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One encoder or decoder block on rows ``x (N, C)``: the norms, projections, feed-forward and residuals touch
    only the N real positions — padding costs nothing but its place in the attention itself. ``cross``: the decoder's
    ``(k, v, source mask, return_weights)``. → ``(x (N, C), cross-attention weights or None)``."""
    drop, weights = block.drop, None
    if block.prenorm:
        x = x + drop(self_attend(block.attn, block.norm_attn(x), keep, b, t, mask, is_causal, kv_cache))
        if cross is not None:
            c, weights = cross_attend(block.cross_attn, block.norm_cross(x), keep, b, t, *cross)
            x = x + drop(c)
        x = x + drop(block.mlp(block.norm_mlp(x)))
    else:
        x = block.norm_attn(x + drop(self_attend(block.attn, x, keep, b, t, mask, is_causal, kv_cache)))
        if cross is not None:
            c, weights = cross_attend(block.cross_attn, x, keep, b, t, *cross)
            x = block.norm_cross(x + drop(c))
        x = block.norm_mlp(x + drop(block.mlp(x)))
    return x, weights


class Transformer(nn.Module):
    """Parameters: ``src_embed`` / ``tgt_embed`` (one table with ``share_embeddings``), ``encoder_blocks``,
    ``decoder_blocks`` (:class:`Block` with cross-attention), ``encoder_norm`` / ``decoder_norm`` (pre-norm only),
    ``lm_head`` (tied to ``tgt_embed`` with ``tie_embeddings``), buffer ``logits_bias (1, V)`` (when switched on)."""

    is_encoder_decoder = True

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.tgt_embed = nn.Embedding(c.vocab_size, c.n_embd)
        self.src_embed = self.tgt_embed if c.share_embeddings else nn.Embedding(c.src_vocab_size, c.n_embd)
        self.register_buffer("positions", marian_sinusoids(c.block_size, c.n_embd), persistent=False)
        self.embed_scale = math.sqrt(c.n_embd) if c.scale_embedding else 1.0
        self.drop = nn.Dropout(c.dropout)
        self.encoder_blocks = nn.ModuleList(Block(c.block_config(False), i) for i in range(c.n_encoder_layer))
        self.decoder_blocks = nn.ModuleList(Block(c.block_config(True), i) for i in range(c.n_layer))
        if c.prenorm:
            self.encoder_norm = make_norm(c.norm, c.n_embd, c.norm_eps, c.bias)
            self.decoder_norm = make_norm(c.norm, c.n_embd, c.norm_eps, c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        if c.logits_bias:
            self.register_buffer("logits_bias", torch.zeros(1, c.vocab_size))
        self.reset_parameters()
        if c.tie_embeddings:
            self.lm_head.weight = self.tgt_embed.weight

    def reset_parameters(self) -> None:
        """N(0, init_std) linear weights, zero biases; embeddings N(0, n_embd^-1/2) when they are scaled by
        sqrt(n_embd) (so the scaled embedding has unit variance, like the positions), else N(0, init_std).

        Why ``init_std`` defaults to n_embd^-1/2 (a unit-variance input gives unit-variance projections, the scale
        of the paper's Xavier init) and not GPT-2's fixed 0.02: at 64 wide, 0.02 makes every query and key ~6x
        too small, the attention scores start near 0 and cross-attention near uniform, and the model learns the
        target language model long before it learns which source token to look at — 400 steps on the synthetic
        task stayed at BLEU ~1, where n_embd^-1/2 reaches BLEU 80+ (tests/train/test_seq2seq_learning.py)."""
        c = self.config
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, c.init_std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, c.n_embd**-0.5 if c.scale_embedding else c.init_std)

    @classmethod
    def from_state_dict(cls, config: TransformerConfig, state_dict: dict[str, torch.Tensor], source: str = "state dict",
                        dtype: torch.dtype | None = None) -> Transformer:
        """Build a model from lmforge-named tensors (a tied tensor stored once); a FormatError names ``source``."""
        from lmforge.models.state import load_state

        return load_state(cls(config), state_dict, source, dtype)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, offset: int) -> torch.Tensor:
        t = ids.shape[1]
        if offset + t > self.config.block_size:
            raise InputError(f"sequence of {offset + t} tokens is longer than the model allows "
                             f"(block_size={self.config.block_size})")
        return self.drop(table(ids) * self.embed_scale + self.positions[offset : offset + t])  # (B, T, C)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Source ids ``(B, S)`` (right-padded; ``attention_mask (B, S)`` 1 = real) → memory ``(B, S, C)`` (zeros at
        padding, which cross-attention masks)."""
        b, s = input_ids.shape
        keep = None if attention_mask is None else attention_mask.bool()  # (B, S)
        mask = None if keep is None else keep[:, None, None, :]  # (B, 1, 1, S)
        x = pack(self._embed(self.src_embed, input_ids, 0), keep)  # (N, C): the real tokens only
        for block in self.encoder_blocks:
            x, _ = run_block(block, x, keep, b, s, mask=mask)
        return unpack(self.encoder_norm(x) if self.config.prenorm else x, keep, b, s)

    def new_cache(self, memory: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  max_len: int | None = None) -> EncoderDecoderCache:
        """Every decoder layer's cross-attention keys/values (computed once) and a self-attention KV cache for
        ``max_len`` target positions (``max_len=0``: none — the decoder then attends causally over what it is given)."""
        b, s, _ = memory.shape
        if attention_mask is None:
            attention_mask = torch.ones(b, s, dtype=torch.long, device=memory.device)
        cross = [cross_keys_values(block.cross_attn, memory) for block in self.decoder_blocks]
        c = self.config
        self_attn = None
        if max_len != 0:
            self_attn = KVCache(c.n_layer, b, c.n_head, max_len or c.block_size, c.head_dim, dtype=memory.dtype,
                                device=memory.device)
        return EncoderDecoderCache(cross, attention_mask, self_attn=self_attn)

    def decode(
        self, decoder_input_ids: torch.Tensor, cache: EncoderDecoderCache, *, last_only: bool = False,
        return_attn: bool = False, target_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Target ids ``(B, T)`` → logits ``(B, T, V)`` (``(B, 1, V)`` with ``last_only``), attending to the cached
        encoder output and, when the cache has one, to the earlier target positions in its KV cache.
        ``return_attn``: also the cross-attention weights ``(B, H, T, S)`` of every layer. ``target_mask (B, T)``
        (bool, right padding; training, no KV cache): compute only the True positions, whose logits come back as
        ``(N, V)`` in row-major order — the training loss needs nothing at target padding."""
        kv = cache.self_attn
        offset = kv.length if kv is not None else 0
        b, t = decoder_input_ids.shape
        keep = target_mask
        if keep is not None:
            keep = keep.bool()
            if kv is not None or bool((keep[:, 1:] & ~keep[:, :-1]).any()):
                raise InputError("target_mask: True positions must come first in each row (right padding), "
                                 "and only without a KV cache")
        x = pack(self._embed(self.tgt_embed, decoder_input_ids, offset), keep)  # (N, C)
        cross_mask = cache.source_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
        self_mask = None
        if offset and t > 1:  # new positions after cached ones: causal among themselves, all of the past
            self_mask = torch.ones(t, offset + t, dtype=torch.bool, device=x.device).tril(offset)[None, None]
        attentions = []
        for block, (k, v) in zip(self.decoder_blocks, cache.cross, strict=True):
            x, weights = run_block(block, x, keep, b, t, mask=self_mask, kv_cache=kv,
                                   is_causal=self_mask is None and t > 1 and not offset,
                                   cross=(k, v, cross_mask, return_attn))
            attentions.append(weights)
        if kv is not None:
            kv.advance(t)
        if keep is None:
            x = x.view(b, t, -1)  # (B, T, C)
            if last_only:
                x = x[:, -1:]
        if self.config.prenorm:
            x = self.decoder_norm(x)
        logits = self.lm_head(x)  # (B, T, V) or (N, V)
        if self.config.logits_bias:
            logits = logits + self.logits_bias
        return (logits, attentions) if return_attn else logits

    def forward(
        self, input_ids: torch.Tensor, decoder_input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        *, return_attn: bool = False, target_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Source ``input_ids (B, S)`` and target ``decoder_input_ids (B, T)`` → decoder logits ``(B, T, V)``
        (``(N, V)`` for the real positions of a right-padded target, ``target_mask (B, T)``; see :meth:`decode`)."""
        memory = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, self.new_cache(memory, attention_mask, max_len=0),
                           return_attn=return_attn, target_mask=target_mask)
