"""Fill-mask: the most likely tokens under each mask token of a text, from a model with a masked-LM head.

>>> lm = lmforge.load("runs/bert")                                       # doctest: +SKIP
>>> fill_mask(lm.model, lm.tokenizer, "The capital of France is [MASK].")[0][0]   # doctest: +SKIP
Candidate(token='paris', id=3000, probability=0.41)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmforge.errors import ConfigError, InputError


@dataclass
class Candidate:
    """One prediction for a mask: the token, its id and its probability (softmax over the vocabulary)."""

    token: str
    id: int
    probability: float


def fill_mask(model: Any, tokenizer: Any, text: str, top_k: int = 5) -> list[list[Candidate]]:
    """For each mask token in ``text`` (in order), the ``top_k`` most likely tokens, best first.

    A text longer than the model's ``block_size`` is cut to it; a mask token that would fall past the cut is an
    :class:`~lmforge.errors.InputError` naming its position (it cannot be predicted from a truncated input).
    """
    import torch

    if getattr(model.config, "head", None) != "mlm":
        raise ConfigError(f"this model has no masked-LM head (its head is {getattr(model.config, 'head', None)!r}); "
                          "use a BertForMaskedLM folder or one from 'lmforge train bert'")
    if top_k < 1:
        raise ConfigError(f"fill-mask: top_k must be >= 1, got {top_k}")
    mask_id = tokenizer.mask_token_id
    mask_text = tokenizer.id_to_token(mask_id) if mask_id is not None else "[MASK]"
    ids = tokenizer.encode(text)
    positions = [i for i, t in enumerate(ids) if t == mask_id]
    if not positions:
        raise InputError(f"no {mask_text} in {text!r}: write {mask_text} where a word should be predicted")
    limit = model.config.block_size
    if positions[-1] >= limit:
        raise InputError(f"{mask_text} at token {positions[-1] + 1} of {len(ids)} is past the model's limit of "
                         f"{limit} tokens (block_size): shorten the text before it")
    ids = ids[:limit]
    with torch.inference_mode():
        probs = model(torch.tensor([ids])).softmax(-1)[0]  # (T, V)
    out = []
    for pos in positions:
        top = probs[pos].topk(min(top_k, probs.shape[-1]))
        out.append([Candidate(tokenizer.id_to_token(int(i)), int(i), float(p))
                    for p, i in zip(top.values, top.indices, strict=True)])
    return out
