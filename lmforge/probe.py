"""Look inside a model: run it once on a text and keep what every view needs.

``probe(lm, "The cat sat")`` → :class:`Probe`: the token ids and their text, per layer the attention weights of
every head ``(H, T, T)``, the residual stream after each block ``(T, C)``, and the model's output logits (the
next-token distribution of a GPT, the masked-token distribution of a BERT with an MLM head). The terminal views,
the images (:mod:`lmforge.plot`) and the local page (:mod:`lmforge.ui`) read only this object.

How the weights are taken: a forward pre-hook on every transformer block switches on ``return_attn=True``, the
attention module's explicit path (softmax written out), and a forward hook keeps each block's output. The model's
own ``forward`` runs unchanged otherwise — same masks, positions, caches — so the pictures show what the model
computes; ``tests/test_probe.py`` checks the explicit path against the fast SDPA path.

The *logit lens* (nostalgebraist, 2020) reads an intermediate residual stream as if it were the last one: the
final norm and the LM head applied to the state after block ``l`` show what the model "would predict" at that
depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lmforge.errors import InputError

DEFAULT_TOP_K = 10


def blocks_of(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a GPT or BERT (``model.blocks``); an InputError for a model without attention."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not len(blocks):
        raise InputError(f"{type(model).__name__} has no attention layers to inspect (GPT and BERT models have)")
    return blocks


def is_causal_lm(model: nn.Module) -> bool:
    """True for a decoder-only language model (has ``lm_head`` and ``norm_f``): it predicts the next token."""
    return hasattr(model, "lm_head") and hasattr(model, "norm_f")


@torch.no_grad()
def run_with_capture(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    attentions: bool = True,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Run ``model(input_ids (B, T), attention_mask (B, T))`` once and capture its insides.

    Returns ``(output, weights, hidden)``: the model's own output (GPT: logits ``(B, T, V)``; BERT: its head's
    output), ``weights`` = per layer ``(B, H, T, T)`` attention weights (empty when ``attentions`` is False — then
    the fast SDPA path runs), ``hidden`` = ``n_layer + 1`` residual-stream states ``(B, T, C)``: the embeddings,
    then the output of each block (before any final norm).
    """
    blocks = blocks_of(model)
    weights: list[torch.Tensor] = []
    hidden: list[torch.Tensor] = []

    def switch_on(module, args, kwargs):
        if not hidden:  # the first block's input is the embedding output
            hidden.append(args[0] if args else kwargs["x"])
        if attentions:
            kwargs["return_attn"] = True
        return args, kwargs

    def keep(module, args, kwargs, output):
        x, w = output  # Block.forward returns (x, self-attention weights or None)
        hidden.append(x)
        if attentions:
            weights.append(w.float())

    handles = []
    try:
        for block in blocks:
            handles.append(block.register_forward_pre_hook(switch_on, with_kwargs=True))
            handles.append(block.register_forward_hook(keep, with_kwargs=True))
        output = model(input_ids, attention_mask)
    finally:
        for h in handles:
            h.remove()
    return output, weights, hidden


def token_texts(tokenizer: Any, ids: list[int]) -> list[str]:
    """How each id reads on its own: the decoded piece (``" the"``), or the vocabulary entry when the piece is part
    of a multi-byte character (``"<0xE2>"``-like entries, byte tokens) that does not decode alone.

    >>> from lmforge.tokenizers import Tokenizer
    >>> token_texts(Tokenizer.from_byte_level_bpe({chr(c): c - 32 for c in range(33, 127)}, []), [72, 73])
    ['h', 'i']
    """
    out = []
    for i in ids:
        piece = tokenizer.decode([i], skip_special_tokens=False)
        if not piece or "\ufffd" in piece:
            piece = tokenizer.id_to_token(i)
        out.append(piece)
    return out


@dataclass
class Probe:
    """One forward pass, kept for looking at. Batch of one; ``T`` tokens, ``L`` layers, ``H`` heads.

    ``attentions[l]``: ``(H, T, T)`` float32 weights of layer ``l`` (row = query position, column = key position);
    ``hidden[l]``: ``(T, C)`` residual stream before block ``l`` (``hidden[L]`` = after the last block, before the
    final norm); ``logits``: ``(T, V)`` or None (an encoder without an MLM head).
    """

    ids: list[int]
    tokens: list[str]
    causal: bool
    attentions: list[torch.Tensor] = field(default_factory=list)
    hidden: list[torch.Tensor] = field(default_factory=list)
    logits: torch.Tensor | None = None

    @property
    def n_layer(self) -> int:
        return len(self.hidden) - 1

    @property
    def n_head(self) -> int:
        return self.attentions[0].shape[0] if self.attentions else 0

    def attention(self, layer: int, head: int) -> torch.Tensor:
        """Weights ``(T, T)`` of one head; an InputError naming the valid range for an unknown layer/head."""
        if not self.attentions:
            raise InputError("no attention weights were captured (probe(..., attentions=False))")
        if not isinstance(layer, int) or not 0 <= layer < self.n_layer:
            raise InputError(f"layer {layer!r} does not exist: this model has layers 0..{self.n_layer - 1}")
        if not isinstance(head, int) or not 0 <= head < self.n_head:
            raise InputError(f"head {head!r} does not exist: this model has heads 0..{self.n_head - 1}")
        return self.attentions[layer][head]

    def probs(self, position: int = -1) -> torch.Tensor:
        """``softmax(logits[position])`` ``(V,)``: for a GPT the next-token distribution after ``position``."""
        if self.logits is None:
            raise InputError("this model has no language-model head, so no token probabilities "
                             "(a BERT needs an MLM head; sentence-embedding models have none)")
        return torch.softmax(self.logits[position].float(), dim=-1)

    def top_k(self, tokenizer: Any, k: int = DEFAULT_TOP_K, position: int = -1) -> list[dict]:
        """The ``k`` most probable tokens at ``position``: ``[{"id", "token", "prob"}, ...]``, most probable first."""
        p = self.probs(position)
        values, idx = p.topk(min(k, p.numel()))
        texts = token_texts(tokenizer, idx.tolist())
        return [{"id": int(i), "token": t, "prob": float(v)} for i, t, v in zip(idx.tolist(), texts, values.tolist(),
                                                                                strict=True)]


def encode_text(lm: Any, text: str) -> list[int]:
    """The ids ``lm.tokenizer`` gives ``text`` (with the model's special tokens), with clear errors for empty text,
    a missing tokenizer and text beyond the context window."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text is empty: give some text to look at")
    if lm.tokenizer is None:
        raise InputError(f"{lm.path}: this model has no tokenizer, so it cannot take text")
    ids = lm.tokenizer.encode(text)
    window = context_window(lm.model)
    if window is not None and len(ids) > window:
        raise InputError(f"the text is {len(ids)} tokens long; the model's context window is {window} tokens")
    if not ids:
        raise InputError("the text encodes to no tokens")
    return ids


def context_window(model: nn.Module) -> int | None:
    """The most positions ``model`` takes (GPT ``block_size``; BERT: the size of its position table)."""
    cfg = getattr(model, "config", None)
    window = getattr(cfg, "block_size", None)
    if window is None:
        positions = getattr(getattr(model, "embed", None), "positions", None)
        window = positions.num_embeddings if isinstance(positions, nn.Embedding) else None
    return window


def probe(lm: Any, text: str | None = None, *, ids: list[int] | None = None, attentions: bool = True) -> Probe:
    """Run ``lm.model`` once on ``text`` (or on token ``ids``) and keep its insides (see :class:`Probe`)."""
    model = lm.model
    blocks_of(model)
    if ids is None:
        ids = encode_text(lm, text)
    elif not ids:
        raise InputError("no tokens to look at")
    window = context_window(model)
    if window is not None and len(ids) > window:
        raise InputError(f"the text is {len(ids)} tokens long; the model's context window is {window} tokens")
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    output, weights, hidden = run_with_capture(model, input_ids, attentions=attentions)
    causal = is_causal_lm(model)
    logits = None
    if causal:
        logits = output[0].float()
    elif getattr(model, "mlm", None) is not None:
        logits = output[0].float()  # the MLM head's (T, V)
    return Probe(
        ids=list(ids), tokens=token_texts(lm.tokenizer, ids) if lm.tokenizer is not None else [str(i) for i in ids],
        causal=causal, attentions=[w[0] for w in weights], hidden=[h[0].float() for h in hidden], logits=logits,
    )


def lens_head(model: nn.Module):
    """The function that turns a residual-stream state ``(.., C)`` into vocabulary logits ``(.., V)`` the way the
    model's last layer does: GPT ``lm_head(norm_f(x))``; BERT with an MLM head ``mlm(x)``."""
    if is_causal_lm(model):
        return lambda x: model.lm_head(model.norm_f(x))
    if getattr(model, "mlm", None) is not None:
        return model.mlm
    raise InputError("the logit lens needs a language-model head (a GPT, or a BERT with an MLM head)")


@torch.no_grad()
def logit_lens(lm: Any, pr: Probe, positions: list[int] | None = None, k: int = 1) -> dict:
    """Decode every layer's residual stream at ``positions`` (default: the last) through the final norm and LM head.

    Returns ``{"positions": [...], "ids": (L+1, P, k), "tokens": [[[str]]], "probs": (L+1, P, k)}`` as lists;
    row ``l`` reads the state before block ``l``, row ``L`` the model's own output (equal to ``pr.logits``).
    """
    T = len(pr.ids)
    positions = [T - 1] if positions is None else [p + T if p < 0 else p for p in positions]
    bad = [p for p in positions if not 0 <= p < T]
    if bad:
        raise InputError(f"position(s) {bad} do not exist: the text has positions 0..{T - 1}")
    head = lens_head(lm.model)
    param = next(lm.model.parameters())
    states = torch.stack([h[positions] for h in pr.hidden]).to(param.dtype)  # (L+1, P, C)
    probs = torch.softmax(head(states).float(), dim=-1)  # (L+1, P, V)
    top_p, top_i = probs.topk(k, dim=-1)  # (L+1, P, k)
    flat = top_i.flatten().tolist()
    texts = dict(zip(set(flat), token_texts(lm.tokenizer, list(set(flat))), strict=True))
    return {
        "positions": positions,
        "ids": top_i.tolist(),
        "tokens": [[[texts[i] for i in row] for row in layer] for layer in top_i.tolist()],
        "probs": top_p.tolist(),
    }


@torch.no_grad()
def greedy_steps(lm: Any, text: str, steps: int, k: int = 5) -> list[dict]:
    """Run ``steps`` greedy steps: per step the chosen token and the top-``k`` alternatives with probabilities
    (``[{"chosen": {...}, "top": [...]}, ...]``). Stops early at an end-of-sequence token."""
    if not is_causal_lm(lm.model):
        raise InputError("--steps needs a generative model (GPT family)")
    ids = encode_text(lm, text)
    window = context_window(lm.model)
    eos = set(getattr(lm, "eos_token_ids", []) or [])
    out = []
    for _ in range(steps):
        if window is not None and len(ids) >= window:
            break
        pr = probe(lm, ids=ids, attentions=False)
        top = pr.top_k(lm.tokenizer, k)
        out.append({"chosen": top[0], "top": top})
        ids = [*ids, top[0]["id"]]
        if top[0]["id"] in eos:
            break
    return out
