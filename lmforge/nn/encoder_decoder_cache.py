"""What an encoder–decoder keeps between decoding steps.

The encoder runs once per input. From its output each decoder layer derives what it attends to — the
cross-attention keys/values of a Transformer, the encoder states and projected attention keys of an RNN — and
that never changes while decoding, so it is computed once (``cross``). What grows is the decoder's own past:
the self-attention keys/values of a Transformer (a :class:`~lmforge.nn.kv_cache.KVCache`) or the hidden state
of a recurrent decoder (``state``). Beam search re-ranks hypotheses every step: :meth:`reorder` keeps both in step.
"""

from __future__ import annotations

import torch

from lmforge.nn.kv_cache import KVCache


class EncoderDecoderCache:
    """``cross``: per decoder layer, a tuple of tensors with the batch on dim 0 (e.g. ``k, v (B, H, S, D)``),
    computed once; ``source_mask (B, S)`` (1 = real source token); ``self_attn``: the decoder's self-attention
    :class:`KVCache` (Transformer) or None; ``state``: a recurrent state ``(L, B, H)`` (RNN) or None.
    ``length``: decoder positions consumed so far."""

    def __init__(
        self,
        cross: list[tuple[torch.Tensor, ...]],
        source_mask: torch.Tensor,
        *,
        self_attn: KVCache | None = None,
        state: torch.Tensor | None = None,
    ) -> None:
        self.cross = cross
        self.source_mask = source_mask
        self.self_attn = self_attn
        self.state = state
        self._length = 0

    @property
    def batch_size(self) -> int:
        return self.source_mask.shape[0]

    @property
    def length(self) -> int:
        return self.self_attn.length if self.self_attn is not None else self._length

    def advance(self, n: int) -> None:
        """Count ``n`` more decoder positions (the self-attention cache advances itself in its model)."""
        if self.self_attn is None:
            self._length += n

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index (B,)`` in that order, in the cross part and in the growing part alike."""
        self.cross = [tuple(t.index_select(0, index) for t in layer) for layer in self.cross]
        self.source_mask = self.source_mask.index_select(0, index)
        if self.self_attn is not None:
            self.self_attn.reorder(index)
        if self.state is not None:
            self.state = self.state.index_select(1, index)

    def repeat_rows(self, n: int) -> EncoderDecoderCache:
        """Each row ``n`` times in a row (``[a, b]`` → ``[a, a, b, b]`` for ``n=2``): beam search's ``B*K`` rows
        from one encoder pass over ``B`` inputs. Only before the first decoding step."""
        if self.length:
            raise RuntimeError("repeat_rows: the cache already holds decoder positions")
        self_attn = None
        if self.self_attn is not None:
            n_layer, b, n_kv_head, max_len, head_dim = self.self_attn.k.shape
            self_attn = KVCache(n_layer, b * n, n_kv_head, max_len, head_dim, dtype=self.self_attn.k.dtype,
                                device=self.self_attn.k.device)
        return EncoderDecoderCache(
            [tuple(t.repeat_interleave(n, 0) for t in layer) for layer in self.cross],
            self.source_mask.repeat_interleave(n, 0),
            self_attn=self_attn,
            state=None if self.state is None else self.state.repeat_interleave(n, 1),
        )
