"""The recurrent encoder–decoder: translation as it was done before the Transformer, with and without attention.

source ids ``(B, S)`` → embeddings → GRU encoder (``bidirectional`` switch) → states ``(B, S, E)`` and a final
summary ``(B, E)``. The decoder is a GRU started from the summary (through ``bridge``) that reads the previous
target token; what it may look at depends on the ``attention`` switch:

- ``"none"`` (Cho et al. 2014, Sutskever et al. 2014): only the final summary, fed to every step. Everything the
  source said must fit into one vector of ``E`` numbers — long sentences do not.
- ``"additive"`` (Bahdanau et al. 2015): at each step a score ``v · tanh(W_q h_t + W_k e_s)`` for every source
  state ``e_s``, softmax over the source, and the weighted mean of the states (the context) joins the output.
- ``"dot"`` (Luong et al. 2015, "general"): the score is ``h_t · W_k e_s``.

The output layer mixes the decoder state with the context, ``tanh(W_out [h_t; context])`` (width ``n_embd``), and
projects to the vocabulary (tied to the target embedding with ``tie_embeddings``). Training uses teacher
forcing: the decoder reads the true previous tokens, so the whole target runs through ``nn.GRU`` in one call.

Decoding protocol (:mod:`lmforge.generate`): ``encode`` once per input; ``new_cache`` stores the encoder states and
their projected attention keys once (the RNN's "cross" part) and the decoder state (the part that changes);
``decode`` runs new target tokens from that state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from lmforge.errors import ConfigError, InputError
from lmforge.nn.encoder_decoder_cache import EncoderDecoderCache

ATTENTION_KINDS = ("none", "additive", "dot")


@dataclass
class RNNSeq2SeqConfig:
    """Hyper-parameters in lmforge's one config vocabulary. ``n_embd``: embedding and output width;
    ``rnn_hidden``: GRU state width per direction (default ``n_embd``); ``n_layer``: GRU layers on each side;
    ``block_size``: the longest source or target sequence accepted."""

    vocab_size: int = 8000
    block_size: int = 256
    n_layer: int = 1
    n_embd: int = 256
    rnn_hidden: int | None = None
    dropout: float = 0.1
    bias: bool = True
    tie_embeddings: bool = True
    src_vocab_size: int | None = None
    share_embeddings: bool = True
    attention: str = "additive"  # "none" | "additive" | "dot"
    bidirectional: bool = True
    label_smoothing: float = 0.0
    pad_token_id: int = 0
    eos_token_id: int = 2
    decoder_start_token_id: int = 1
    init_std: float = 0.1

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"RNNSeq2SeqConfig.{name}: expected a positive integer, got {value!r}")
        if self.rnn_hidden is None:
            self.rnn_hidden = self.n_embd
        if self.src_vocab_size is None:
            self.src_vocab_size = self.vocab_size
        if self.share_embeddings and self.src_vocab_size != self.vocab_size:
            raise ConfigError(f"RNNSeq2SeqConfig.share_embeddings needs src_vocab_size == vocab_size, got "
                              f"{self.src_vocab_size} and {self.vocab_size}")
        if self.attention not in ATTENTION_KINDS:
            raise ConfigError(f"RNNSeq2SeqConfig.attention: expected one of {ATTENTION_KINDS}, got {self.attention!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"RNNSeq2SeqConfig.dropout: expected a value in [0, 1), got {self.dropout!r}")
        for name in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ConfigError(f"RNNSeq2SeqConfig.{name}: expected an id in 0..{self.vocab_size - 1}, got {value!r}")

    @property
    def encoder_dim(self) -> int:
        """Width ``E`` of an encoder state: both directions concatenated when bidirectional."""
        return self.rnn_hidden * (2 if self.bidirectional else 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> RNNSeq2SeqConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"{source}: unknown RNN seq2seq config field(s) {unknown}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"{source}: {e}") from None


class RNNSeq2Seq(nn.Module):
    """Parameters: ``src_embed`` / ``tgt_embed``, ``encoder`` (GRU), ``bridge`` (summary → initial decoder state
    per layer), ``decoder`` (GRU), ``attn_key`` / ``attn_query`` / ``attn_v`` (attention scores), ``combine``
    (``[h; context]`` → ``n_embd``), ``lm_head``."""

    is_encoder_decoder = True

    def __init__(self, config: RNNSeq2SeqConfig) -> None:
        super().__init__()
        self.config = c = config
        h, e = c.rnn_hidden, c.encoder_dim
        gru_dropout = c.dropout if c.n_layer > 1 else 0.0
        self.tgt_embed = nn.Embedding(c.vocab_size, c.n_embd)
        self.src_embed = self.tgt_embed if c.share_embeddings else nn.Embedding(c.src_vocab_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.GRU(c.n_embd, h, c.n_layer, bias=c.bias, batch_first=True, dropout=gru_dropout,
                              bidirectional=c.bidirectional)
        self.bridge = nn.Linear(e, h, bias=c.bias)
        # Without attention the summary is fed to every decoder step next to the previous token.
        dec_in = c.n_embd + (e if c.attention == "none" else 0)
        self.decoder = nn.GRU(dec_in, h, c.n_layer, bias=c.bias, batch_first=True, dropout=gru_dropout)
        if c.attention != "none":
            self.attn_key = nn.Linear(e, h, bias=False)
        if c.attention == "additive":
            self.attn_query = nn.Linear(h, h, bias=c.bias)
            self.attn_v = nn.Linear(h, 1, bias=False)
        self.combine = nn.Linear(h + e, c.n_embd, bias=c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.reset_parameters()
        if c.tie_embeddings:
            self.lm_head.weight = self.tgt_embed.weight

    def reset_parameters(self) -> None:
        """Uniform(-init_std, init_std) weights (the classic seq2seq init), zero biases, and N(0, 1) embeddings:
        with small embeddings the decoder's input starts near zero and training sits for hundreds of steps on the
        unigram plateau before it uses the previous token at all."""
        for name, p in self.named_parameters():
            if name.endswith("bias") or "bias_" in name:
                nn.init.zeros_(p)
            elif name.endswith("embed.weight"):
                nn.init.normal_(p, 0.0, 1.0)
            else:
                nn.init.uniform_(p, -self.config.init_std, self.config.init_std)

    @classmethod
    def from_state_dict(cls, config: RNNSeq2SeqConfig, state_dict: dict[str, torch.Tensor], source: str = "state dict",
                        dtype: torch.dtype | None = None) -> RNNSeq2Seq:
        """Build a model from lmforge-named tensors (a tied tensor stored once); a FormatError names ``source``."""
        from lmforge.models.state import load_state

        return load_state(cls(config), state_dict, source, dtype)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_length(self, ids: torch.Tensor, offset: int = 0) -> None:
        if offset + ids.shape[1] > self.config.block_size:
            raise InputError(f"sequence of {offset + ids.shape[1]} tokens is longer than the model allows "
                             f"(block_size={self.config.block_size})")

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Source ids ``(B, S)``, right-padded → ``(states (B, S, E), final (n_layer, B, E))``; padding is packed away,
        so a row's states and summary do not depend on how much padding follows it."""
        self._check_length(input_ids)
        b, s = input_ids.shape
        x = self.drop(self.src_embed(input_ids))  # (B, S, n_embd)
        lengths = (attention_mask.sum(-1) if attention_mask is not None
                   else torch.full((b,), s, device=input_ids.device)).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, final = self.encoder(packed)  # final: (n_layer * dirs, B, H)
        states, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=s)  # (B, S, E)
        dirs = 2 if self.config.bidirectional else 1
        final = final.view(self.config.n_layer, dirs, b, -1).permute(0, 2, 1, 3).reshape(self.config.n_layer, b, -1)
        return states, final  # final (n_layer, B, E): each layer's last forward (and first backward) state

    def new_cache(self, encoded: tuple[torch.Tensor, torch.Tensor], attention_mask: torch.Tensor | None = None,
                  max_len: int | None = None) -> EncoderDecoderCache:
        """The encoder states, their attention keys and the summary (computed once; ``cross[0]``) and the decoder's
        initial state ``tanh(bridge(final))`` (the part that changes)."""
        states, final = encoded
        b, s, _ = states.shape
        if attention_mask is None:
            attention_mask = torch.ones(b, s, dtype=torch.long, device=states.device)
        keys = self.attn_key(states) if self.config.attention != "none" else states[:, :, :0]  # (B, S, H)
        summary = final[-1]  # (B, E) the top layer's summary of the whole source
        state = torch.tanh(self.bridge(final))  # (n_layer, B, H)
        return EncoderDecoderCache([(states, keys, summary)], attention_mask, state=state)

    def attention_weights(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``query (B, T, H)``, ``keys (B, S, H)``, ``mask (B, S)`` → weights ``(B, T, S)`` summing to 1 over the
        real source positions."""
        if self.config.attention == "additive":
            scores = self.attn_v(torch.tanh(self.attn_query(query)[:, :, None] + keys[:, None])).squeeze(-1)
        else:
            scores = query @ keys.transpose(1, 2)  # (B, T, S)
        scores = scores.float().masked_fill(~mask.bool()[:, None, :], float("-inf"))
        return torch.softmax(scores, dim=-1).to(query.dtype)

    def decode(
        self, decoder_input_ids: torch.Tensor, cache: EncoderDecoderCache, *, last_only: bool = False,
        return_attn: bool = False, target_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Target ids ``(B, T)`` → logits ``(B, T, V)`` from the cached decoder state, which is advanced.
        ``return_attn``: also ``[weights (B, 1, T, S)]`` (one "layer", one "head"; ``[None]`` without attention).
        ``target_mask (B, T)`` (bool): logits ``(N, V)`` of only the N True positions (no LM head on padding)."""
        self._check_length(decoder_input_ids, cache.length)
        states, keys, summary = cache.cross[0]
        b, t = decoder_input_ids.shape
        x = self.drop(self.tgt_embed(decoder_input_ids))  # (B, T, n_embd)
        if self.config.attention == "none":
            x = torch.cat([x, summary[:, None].expand(b, t, summary.shape[-1])], dim=-1)
        h, cache.state = self.decoder(x, cache.state.contiguous())  # h: (B, T, H)
        cache.advance(t)
        weights = None
        if self.config.attention == "none":
            context = summary[:, None].expand(b, t, summary.shape[-1])  # (B, T, E)
        else:
            weights = self.attention_weights(h, keys, cache.source_mask)  # (B, T, S)
            context = weights @ states  # (B, T, E)
        out = torch.tanh(self.combine(self.drop(torch.cat([h, context], dim=-1))))  # (B, T, n_embd)
        if last_only:
            out = out[:, -1:]
        if target_mask is not None:
            out = out[target_mask]  # (N, n_embd)
        logits = self.lm_head(self.drop(out))
        if return_attn:
            return logits, [None if weights is None else weights[:, None]]
        return logits

    def forward(
        self, input_ids: torch.Tensor, decoder_input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        *, return_attn: bool = False, target_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Source ``input_ids (B, S)`` and target ``decoder_input_ids (B, T)`` → decoder logits ``(B, T, V)``
        (teacher forcing: the true previous tokens are the decoder's input); ``(N, V)`` for the True positions of
        ``target_mask (B, T)``."""
        encoded = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, self.new_cache(encoded, attention_mask), return_attn=return_attn,
                           target_mask=target_mask)
