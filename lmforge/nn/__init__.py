"""Transformer building blocks, shared by GPT, BERT and the encoder-decoder. Depends on torch only.

- :mod:`attention` — multi-head / grouped-query / cross attention, SDPA fast path, explicit path with weights,
  :func:`build_mask` for causal and padding masks;
- :mod:`positions` — learned, sinusoidal, rotary (RoPE);
- :mod:`norms` — LayerNorm, RMSNorm; :mod:`feedforward` — GELU MLP, SwiGLU; :mod:`moe` — mixture of experts;
- :mod:`block` — :class:`BlockConfig` and the pre-/post-norm :class:`Block`; :mod:`kv_cache` — :class:`KVCache`.
"""

from lmforge.nn.attention import Attention, build_mask, explicit_attention
from lmforge.nn.block import Block, BlockConfig
from lmforge.nn.feedforward import FeedForward
from lmforge.nn.kv_cache import KVCache
from lmforge.nn.moe import MoE, load_balancing_loss
from lmforge.nn.norms import RMSNorm, make_norm
from lmforge.nn.positions import Rotary, SinusoidalPositions, apply_rotary, sinusoidal_table

__all__ = [
    "Attention", "Block", "BlockConfig", "FeedForward", "KVCache", "MoE", "RMSNorm", "Rotary",
    "SinusoidalPositions", "apply_rotary", "build_mask", "explicit_attention", "load_balancing_loss",
    "make_norm", "sinusoidal_table",
]
