"""Masked-language-model pre-training (BERT's objective), as a task for the shared training loop.

Each step: pick 15% of the (non-special) tokens; of those, 80% become ``[MASK]``, 10% a random token, 10% stay
as they are; the model must predict the original token at every picked position. The random/kept cases stop the
model from learning "only [MASK] positions matter", since at fine-tuning time there is no [MASK]. Whole-word
masking picks whole words (a start piece and its ``##`` continuations) instead of single pieces, so the model
cannot recover ``##ing`` from ``walk`` next to it.

    from lmforge.train.mlm import pretrain_bert
    result = pretrain_bert(["builtin"], "runs/bert", tokenizer_path=PATH_TO_VOCAB, preset="bert-tiny")
    lm = lmforge.load("runs/bert")   # an HF BertForMaskedLM folder: transformers opens it too
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmforge.errors import ConfigError, InputError
from lmforge.models.bert import Bert, BertConfig
from lmforge.train.loop import TrainResult, train
from lmforge.train.presets import resolve_preset

IGNORE = -100  # label of positions that are not predicted (cross_entropy's ignore_index)


def word_start_mask(tokenizer: Any, vocab_size: int, prefix: str = "##") -> torch.Tensor:
    """``(V,)`` bool: True where a token begins a word (WordPiece continuation pieces start with ``##``).

    Whole-word masking uses it to group a word's pieces. For a tokenizer without ``##`` pieces every token is its
    own word.
    """
    starts = torch.ones(vocab_size, dtype=torch.bool)
    for i in range(min(vocab_size, len(tokenizer))):
        tok = tokenizer.id_to_token(i)
        if tok is not None and tok.startswith(prefix) and len(tok) > len(prefix):
            starts[i] = False
    return starts


def mask_tokens(
    input_ids: torch.Tensor,
    special: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator | None = None,
    mask_prob: float = 0.15,
    word_starts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of ``input_ids (B, T)`` → ``(inputs (B, T), labels (B, T))``.

    ``special (B, T)`` bool marks positions never picked ([CLS], [SEP], padding). ``labels`` holds the original
    id at picked positions and ``IGNORE`` elsewhere. ``word_starts`` (``(V,)`` bool, see :func:`word_start_mask`)
    switches on whole-word masking. At least one position per batch is picked (a loss over nothing is NaN).

    >>> ids = torch.tensor([[2, 10, 11, 12, 3]]); sp = torch.tensor([[True, False, False, False, True]])
    >>> inp, lab = mask_tokens(ids, sp, mask_token_id=4, vocab_size=20, mask_prob=1.0)
    >>> lab.tolist()
    [[-100, 10, 11, 12, -100]]
    """
    if not 0.0 < mask_prob <= 1.0:
        raise ConfigError(f"mask_prob must be in (0, 1], got {mask_prob}")
    B, T = input_ids.shape
    u = torch.rand(B, T, generator=generator)
    if word_starts is None:
        picked = (u < mask_prob) & ~special
    else:
        # A word = a start piece and the continuation pieces after it. Each word draws once (at its start);
        # every piece reads the draw of the last start at or before it (a running max of start positions).
        starts = word_starts[input_ids] | special  # (B, T); a special token also ends the previous word
        pos = torch.arange(T).expand(B, T)
        owner = torch.where(starts, pos, torch.zeros_like(pos)).cummax(dim=1).values  # (B, T): index of word start
        picked = (u.gather(1, owner) < mask_prob) & ~special
    if not picked.any():
        candidates = (~special).nonzero()
        if len(candidates) == 0:
            raise InputError("mask_tokens: the batch holds only special tokens; nothing to predict")
        b, t = candidates[torch.randint(len(candidates), (1,), generator=generator)][0]
        picked[b, t] = True
    labels = torch.where(picked, input_ids, torch.full_like(input_ids, IGNORE))
    r = torch.rand(B, T, generator=generator)
    inputs = input_ids.clone()
    inputs[picked & (r < 0.8)] = mask_token_id  # 80%: [MASK]
    random_pos = picked & (r >= 0.8) & (r < 0.9)  # 10%: a random token; the last 10% keep the original
    inputs[random_pos] = torch.randint(vocab_size, (int(random_pos.sum()),), generator=generator)
    return inputs, labels


def chunk_tokens(docs: Sequence[Sequence[int]], seq_len: int, cls_id: int, sep_id: int) -> np.ndarray:
    """Concatenate token ids of documents and cut into rows ``[CLS] piece [SEP]`` of exactly ``seq_len``.

    >>> chunk_tokens([[5, 6, 7], [8, 9]], 4, cls_id=1, sep_id=2).tolist()
    [[1, 5, 6, 2], [1, 7, 8, 2]]
    """
    body = seq_len - 2
    if body < 1:
        raise ConfigError(f"seq_len must be >= 3 ([CLS] + a token + [SEP]), got {seq_len}")
    flat = np.fromiter((t for d in docs for t in d), dtype=np.int64)
    n = len(flat) // body
    if n == 0:
        raise InputError(f"the text holds {len(flat)} tokens, fewer than one sequence of {body}; give more text "
                         "or a smaller --seq-len")
    rows = flat[: n * body].reshape(n, body)
    return np.concatenate([np.full((n, 1), cls_id), rows, np.full((n, 1), sep_id)], axis=1)


class MaskedLMTask:
    """Random rows of the training sequences, freshly masked every time; a fixed masked validation set.

    Batches are dicts ``{"input_ids", "labels"}`` of shape ``(B, T)`` (rows all have length ``T``: no padding).
    """

    def __init__(
        self,
        train_rows: np.ndarray,
        val_rows: np.ndarray,
        *,
        mask_token_id: int,
        special_ids: Sequence[int],
        vocab_size: int,
        mask_prob: float = 0.15,
        word_starts: torch.Tensor | None = None,
        seed: int = 0,
    ) -> None:
        self.train_rows = torch.from_numpy(np.ascontiguousarray(train_rows))
        self.val_rows = torch.from_numpy(np.ascontiguousarray(val_rows))
        self.mask_token_id, self.vocab_size, self.mask_prob = mask_token_id, vocab_size, mask_prob
        self.special_ids = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        self.word_starts = word_starts
        self.seed = seed
        self.gen = torch.Generator().manual_seed(seed)
        self._val_cache: dict[int, list[dict[str, torch.Tensor]]] = {}

    def _mask(self, rows: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        special = torch.isin(rows, self.special_ids)
        inputs, labels = mask_tokens(rows, special, self.mask_token_id, self.vocab_size, gen, self.mask_prob,
                                     self.word_starts)
        return {"input_ids": inputs, "labels": labels}

    def next_batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(self.train_rows), (batch_size,), generator=self.gen)
        return self._mask(self.train_rows[idx], self.gen)

    def eval_batches(self, batch_size: int) -> list[dict[str, torch.Tensor]]:
        if batch_size not in self._val_cache:
            gen = torch.Generator().manual_seed(self.seed + 1)  # the same masks at every evaluation
            self._val_cache[batch_size] = [self._mask(self.val_rows[s : s + batch_size], gen)
                                           for s in range(0, len(self.val_rows), batch_size)]
        return self._val_cache[batch_size]

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        picked = batch["labels"] != IGNORE
        logits = model(batch["input_ids"], predict_at=picked)  # (N, V): only the picked positions
        return F.cross_entropy(logits.float(), batch["labels"][picked])

    def tokens_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["input_ids"].numel())

    def state_dict(self) -> dict:
        return {"rng": self.gen.get_state().tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(torch.tensor(state["rng"], dtype=torch.uint8))


@dataclass
class MaskedAccuracy:
    """Masked-token accuracy of a model and of the frequency baseline (always guess the most common target)."""

    accuracy: float
    baseline: float
    predicted: int


@torch.no_grad()
def masked_accuracy(model: Bert, batches: Sequence[dict[str, torch.Tensor]]) -> MaskedAccuracy:
    """Fraction of picked positions whose top prediction is the original token, over fixed masked batches."""
    was_training = model.training
    model.eval()
    correct, targets = 0, []
    for batch in batches:
        picked = batch["labels"] != IGNORE
        logits = model(batch["input_ids"], predict_at=picked)
        gold = batch["labels"][picked]
        correct += int((logits.argmax(-1) == gold).sum())
        targets.append(gold)
    model.train(was_training)
    gold = torch.cat(targets)
    baseline = float(torch.bincount(gold).max()) / len(gold)
    return MaskedAccuracy(correct / len(gold), baseline, len(gold))


def bert_exporter(config: BertConfig, tokenizer: Any):
    """``export(state_dict, folder)`` for the loop: the run folder stays an HF BertForMaskedLM folder."""
    from lmforge.io.hf_bert import save_hf_bert

    def export(state: dict[str, torch.Tensor], folder: Path) -> None:
        model = Bert(config)
        model.load_state_dict(state)
        save_hf_bert(model, folder, tokenizer=tokenizer)

    return export


def pretrain_bert(
    sources: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    tokenizer_path: str | os.PathLike | None = None,
    preset: str = "bert-tiny",
    *,
    vocab_size: int = 8000,
    seq_len: int = 128,
    mask_prob: float = 0.15,
    whole_word: bool = False,
    val_fraction: float = 0.05,
    model_overrides: dict | None = None,
    train_overrides: dict | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> tuple[TrainResult, MaskedAccuracy]:
    """Pre-train a BERT (``preset`` shape + overrides) with masked-LM on text files (or ``["builtin"]``).

    ``tokenizer_path``: a WordPiece vocab.txt / tokenizer.json / model folder; None trains a WordPiece tokenizer of
    ``vocab_size`` on the same text. Returns the loop's result and the final masked-token accuracy on the held-out
    sequences.
    """
    from lmforge.data.corpus import iter_documents
    from lmforge.tokenizers import load_tokenizer, train_tokenizer

    model_fields, train_config = resolve_preset(preset, model_overrides, train_overrides, family="bert")
    sources = [str(s) for s in sources] or ["builtin"]
    if tokenizer_path is not None:
        tok = load_tokenizer(tokenizer_path)
    else:
        files = None if sources == ["builtin"] else sources
        tok = train_tokenizer(files=files, kind="wordpiece", vocab_size=vocab_size, show_progress=progress)
    for role in ("cls", "sep", "mask"):
        if getattr(tok, f"{role}_token_id") is None:
            raise ConfigError(f"{tokenizer_path}: the tokenizer has no {role} token; BERT needs [CLS], [SEP], [MASK]")
    docs = tok.encode_many(list(iter_documents(sources)), add_special_tokens=False)
    rows = chunk_tokens(docs, seq_len, tok.cls_token_id, tok.sep_token_id)
    n_val = max(1, int(len(rows) * val_fraction)) if len(rows) > 1 else 0
    rng = np.random.default_rng(0)
    rows = rows[rng.permutation(len(rows))]
    val_rows, train_rows = rows[:n_val], rows[n_val:]
    if len(train_rows) == 0:
        raise InputError("the text is too short for a training set; give more text or a smaller --seq-len")
    fields = {"vocab_size": len(tok), "block_size": max(seq_len, 512), "head": "mlm",
              "pad_token_id": tok.pad_token_id or 0, **model_fields}
    config = BertConfig.from_dict(fields, source="model config")
    if config.vocab_size < len(tok):
        raise ConfigError(f"vocab_size {config.vocab_size} is smaller than the tokenizer's {len(tok)} tokens")
    specials = [i for i in (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id) if i is not None]
    task = MaskedLMTask(
        train_rows, val_rows if len(val_rows) else train_rows[:1], mask_token_id=tok.mask_token_id,
        special_ids=specials, vocab_size=len(tok), mask_prob=mask_prob,
        word_starts=word_start_mask(tok, len(tok)) if whole_word else None, seed=train_config.seed,
    )
    torch.manual_seed(train_config.seed)
    model = Bert(config)
    result = train(model, task, train_config, out_dir, resume=resume, model_config=config.to_dict(),
                   export=bert_exporter(config, tok), progress=progress, stop_after=stop_after)
    return result, masked_accuracy(model, task.eval_batches(train_config.batch_size))
