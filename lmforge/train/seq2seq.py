"""Training encoder–decoders on parallel text: the task the loop trains on, and ``lmforge train seq2seq``.

    from lmforge.train.seq2seq import train_seq2seq
    result = train_seq2seq("synthetic", "runs/rnn", arch="rnn", model_overrides={"attention": "additive"},
                           train_overrides={"steps": 500})
    lm = lmforge.load("runs/rnn"); lm.generate("the big dog sees a cat")

A run folder is a loadable model folder (``lmforge.json`` + ``model.safetensors`` + ``tokenizer.json``) with
``checkpoints/``, ``metrics.jsonl``, ``loss.png``, ``train_config.json`` and ``seq2seq.json`` (which data and split
it was trained on, so ``lmforge eval`` can score the held-out test split).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.data.parallel import Pair, read_parallel, split_pairs
from lmforge.errors import ConfigError, InputError
from lmforge.fileio import atomic_write_text
from lmforge.models.rnn_seq2seq import RNNSeq2Seq, RNNSeq2SeqConfig
from lmforge.models.transformer import Transformer, TransformerConfig
from lmforge.train.loop import TrainConfig, TrainResult, train, unwrap_model

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
ARCHES = ("rnn", "transformer")

# Default shapes and optimisation per architecture: small enough to train on a laptop CPU in minutes.
DEFAULT_MODEL: dict[str, dict] = {
    "rnn": {"n_embd": 128, "rnn_hidden": 128, "n_layer": 1, "dropout": 0.1, "attention": "additive",
            "bidirectional": True},
    "transformer": {"n_layer": 3, "n_head": 4, "n_embd": 128, "ffn_hidden": 512, "dropout": 0.1,
                    "label_smoothing": 0.1},
}
DEFAULT_TRAIN = {"steps": 2000, "batch_size": 64, "lr": 2e-3, "warmup_steps": 100, "weight_decay": 0.01,
                 "eval_every": 200, "eval_batches": 4, "checkpoint_every": 500, "log_every": 50, "beta2": 0.98}
RUN_FILE = "seq2seq.json"


def seq2seq_batch(pairs: list[tuple[list[int], list[int]]], pad_id: int, start_id: int, eos_id: int
                  ) -> dict[str, torch.Tensor]:
    """Right-padded tensors for teacher forcing: ``src, src_mask (B, S)``; ``dec`` = start + target, ``labels`` =
    target + eos (-100 on padding), both ``(B, T)``.

    >>> b = seq2seq_batch([([5, 6, 2], [7])], pad_id=0, start_id=1, eos_id=2)
    >>> b["dec"].tolist(), b["labels"].tolist()
    ([[1, 7]], [[7, 2]])
    """
    s = max(len(src) for src, _ in pairs)
    t = max(len(tgt) for _, tgt in pairs) + 1
    b = len(pairs)
    src = torch.full((b, s), pad_id, dtype=torch.long)
    src_mask = torch.zeros((b, s), dtype=torch.long)
    dec = torch.full((b, t), pad_id, dtype=torch.long)
    labels = torch.full((b, t), -100, dtype=torch.long)
    for r, (x, y) in enumerate(pairs):
        src[r, : len(x)], src_mask[r, : len(x)] = torch.tensor(x), 1
        dec[r, : len(y) + 1] = torch.tensor([start_id, *y])
        labels[r, : len(y) + 1] = torch.tensor([*y, eos_id])
    return {"src": src, "src_mask": src_mask, "dec": dec, "labels": labels}


class Seq2SeqTask:
    """Random batches of training pairs (drawn uniformly, with replacement, from the task's generator; the model
    skips the padding of a mixed-length batch, see ``target_mask``); fixed batches
    of validation pairs. Loss: cross-entropy per target token with the model's label smoothing."""

    def __init__(self, train_ids: list[tuple[list[int], list[int]]], valid_ids: list[tuple[list[int], list[int]]],
                 pad_id: int, start_id: int, eos_id: int, seed: int = 0) -> None:
        if not train_ids:
            raise InputError("no training pairs")
        self.train_ids, self.valid_ids = train_ids, valid_ids
        self.ids = (pad_id, start_id, eos_id)
        self.gen = torch.Generator().manual_seed(seed)

    def next_batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        index = torch.randint(len(self.train_ids), (batch_size,), generator=self.gen).tolist()
        return seq2seq_batch([self.train_ids[i] for i in index], *self.ids)

    def eval_batches(self, batch_size: int) -> list[dict[str, torch.Tensor]]:
        v = self.valid_ids
        return [seq2seq_batch(v[i : i + batch_size], *self.ids) for i in range(0, len(v), batch_size)]

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        target = batch["labels"] != -100  # (B, T): no LM head, softmax or loss on target padding
        logits = model(batch["src"], batch["dec"], batch["src_mask"], target_mask=target)  # (N, V)
        smoothing = unwrap_model(model).config.label_smoothing if model.training else 0.0
        return F.cross_entropy(logits.float(), batch["labels"][target], label_smoothing=smoothing)

    def tokens_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["src_mask"].sum() + (batch["labels"] != -100).sum())

    def state_dict(self) -> dict:
        return {"rng": self.gen.get_state().tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(torch.tensor(state["rng"], dtype=torch.uint8))


def train_tokenizer_for(pairs: list[Pair], vocab_size: int) -> Any:
    """One byte-level BPE for both languages (shared embeddings need one vocabulary), with ``<pad> <s> </s> <unk>``."""
    from lmforge.tokenizers.train import train_tokenizer

    texts = [p.source for p in pairs] + [p.target for p in pairs]
    tok = train_tokenizer(texts, vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token = SPECIAL_TOKENS
    return tok


def encode_pairs(tokenizer: Any, pairs: list[Pair], block_size: int, eos_id: int
                 ) -> list[tuple[list[int], list[int]]]:
    """Token ids (source + eos, target) of each pair; one longer than ``block_size`` is an :class:`InputError`
    naming its file and line."""
    src = tokenizer.encode_many([p.source for p in pairs], add_special_tokens=False)
    tgt = tokenizer.encode_many([p.target for p in pairs], add_special_tokens=False)
    out = []
    for p, x, y in zip(pairs, src, tgt, strict=True):
        if len(x) + 1 > block_size or len(y) + 1 > block_size:
            side, n = ("source", len(x) + 1) if len(x) + 1 > block_size else ("target", len(y) + 1)
            raise InputError(f"{p.where}: the {side} sentence has {n} tokens, more than the model allows "
                             f"(block_size={block_size}); shorten it or raise --block-size")
        out.append((x + [eos_id], y))
    return out


def build_model(arch: str, fields: dict) -> nn.Module:
    if arch == "rnn":
        return RNNSeq2Seq(RNNSeq2SeqConfig.from_dict(fields, source="model config"))
    if arch == "transformer":
        return Transformer(TransformerConfig.from_dict(fields, source="model config"))
    raise ConfigError(f"--arch: expected one of {ARCHES}, got {arch!r}")


@dataclass
class Seq2SeqSetup:
    """Everything a run needs: the model, its tokenizer, the task and the data split (lists of :class:`Pair`)."""

    model: nn.Module
    tokenizer: Any
    task: Seq2SeqTask
    splits: dict[str, list[Pair]]
    train_config: TrainConfig


def prepare(data: str | os.PathLike | list, arch: str = "transformer", model_overrides: dict | None = None,
            train_overrides: dict | None = None, *, vocab_size: int | None = None, tokenizer: Any = None,
            valid_fraction: float = 0.05, test_fraction: float = 0.05, pairs: list[Pair] | None = None
            ) -> Seq2SeqSetup:
    """Read and split the data, train (or take) the tokenizer, build the model and the task."""
    if arch not in ARCHES:
        raise ConfigError(f"--arch: expected one of {ARCHES}, got {arch!r}")
    train_fields = {**DEFAULT_TRAIN, **(train_overrides or {})}
    try:
        train_config = TrainConfig(**train_fields)
    except TypeError as e:
        raise ConfigError(f"train config: {e}") from None
    pairs = pairs if pairs is not None else read_parallel(data)
    splits = split_pairs(pairs, valid_fraction, test_fraction)
    if tokenizer is None:
        default_vocab = 1024 if str(data) == "synthetic" else 8000
        tokenizer = train_tokenizer_for(splits["train"], vocab_size or default_vocab)
    pad, start, eos = (tokenizer.token_to_id(t) for t in SPECIAL_TOKENS[:3])
    if None in (pad, start, eos):
        raise ConfigError(f"tokenizer: needs the special tokens {SPECIAL_TOKENS[:3]}")
    fields = {**DEFAULT_MODEL[arch], "block_size": 128, **(model_overrides or {})}
    fields.update(vocab_size=tokenizer.vocab_size, pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=start)
    torch.manual_seed(train_config.seed)  # the same initial weights on every process and every run
    model = build_model(arch, fields)
    block = model.config.block_size
    task = Seq2SeqTask(encode_pairs(tokenizer, splits["train"], block, eos),
                       encode_pairs(tokenizer, splits["valid"], block, eos)[: train_config.eval_batches
                                                                              * train_config.batch_size],
                       pad, start, eos, seed=train_config.seed)
    return Seq2SeqSetup(model, tokenizer, task, splits, train_config)


def _exporter(model: nn.Module, tokenizer: Any):
    from lmforge.io.lmforge_format import save_model

    def export(state: dict[str, torch.Tensor], folder: Path) -> None:
        fresh = type(model)(model.config)
        fresh.load_state_dict(state)
        save_model(folder, fresh, tokenizer)

    return export


def train_seq2seq(
    data: str | os.PathLike | list, out_dir: str | os.PathLike, arch: str = "transformer",
    model_overrides: dict | None = None, train_overrides: dict | None = None, *, vocab_size: int | None = None,
    resume: bool = False, progress: bool = True, stop_after: int | None = None, valid_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> TrainResult:
    """Train an encoder–decoder (``arch`` ``"rnn"`` | ``"transformer"``) on ``data`` (a TSV file, a folder, two
    aligned files, ``"ding"`` or ``"synthetic"``); the run goes to ``out_dir``. ``resume`` continues from the newest
    checkpoint with the run's own tokenizer."""
    out = Path(out_dir)
    tokenizer = None
    if resume and (out / "tokenizer.json").exists():
        from lmforge.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(out / "tokenizer.json")
    setup = prepare(data, arch, model_overrides, train_overrides, vocab_size=vocab_size, tokenizer=tokenizer,
                    valid_fraction=valid_fraction, test_fraction=test_fraction)
    out.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:
        spec = [str(d) for d in data] if isinstance(data, (list, tuple)) else str(data)
        info = {"arch": arch, "data": spec, "valid_fraction": valid_fraction, "test_fraction": test_fraction,
                "pairs": {k: len(v) for k, v in setup.splits.items()}}
        atomic_write_text(out / RUN_FILE, json.dumps(info, indent=2) + "\n")
    model_config = {"arch": arch, **setup.model.config.to_dict()}
    return train(setup.model, setup.task, setup.train_config, out, resume=resume, model_config=model_config,
                 export=_exporter(setup.model, setup.tokenizer), progress=progress, stop_after=stop_after)


def test_pairs_of_run(run_dir: str | os.PathLike) -> list[Pair] | None:
    """The held-out test pairs of a run folder (from its ``seq2seq.json``), or None when it has none."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        return None
    from lmforge.fileio import read_json

    info = read_json(path)
    return split_pairs(read_parallel(info["data"]), info["valid_fraction"], info["test_fraction"])["test"]


# pytest would collect test_pairs_of_run from modules that import it: it is not a test.
test_pairs_of_run.__test__ = False


# ---------------------------------------------------------------- evaluation


def translate_ids(model: nn.Module, tokenizer: Any, sources: list[str], *, batch_size: int = 64,
                  num_beams: int = 1, max_new_tokens: int | None = None) -> list[str]:
    """Translate ``sources`` in batches (sorted by length, so batches hold alike lengths) → texts in input order."""
    from lmforge.generate import seq2seq_generate_ids

    c = model.config
    max_new = max_new_tokens or c.block_size
    ids = [x + [c.eos_token_id] for x in tokenizer.encode_many(sources, add_special_tokens=False)]
    for n, x in enumerate(ids, 1):
        if len(x) > c.block_size:
            raise InputError(f"sentence {n} has {len(x)} tokens (with the end token), more than the model allows "
                             f"(block_size={c.block_size})")
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[str] = [""] * len(ids)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            result = seq2seq_generate_ids(model, [ids[i] for i in chunk], max_new_tokens=max_new, num_beams=num_beams)
            for i, new in zip(chunk, result.new_ids, strict=True):
                out[i] = tokenizer.decode(new)
    finally:
        model.train(was_training)
    return [t.strip() for t in out]


def bleu_chrf(hypotheses: list[str], references: list[str]) -> tuple[float, float]:
    """Corpus BLEU and chrF (sacrebleu's defaults) of ``hypotheses`` against one reference each."""
    import sacrebleu

    if not hypotheses:
        return float("nan"), float("nan")
    return (sacrebleu.corpus_bleu(hypotheses, [references]).score,
            sacrebleu.corpus_chrf(hypotheses, [references]).score)


LENGTH_BUCKETS = ((1, 10), (11, 20), (21, 30), (31, 1000))


def bucket_name(lo: int, hi: int) -> str:
    return f"{lo}+" if hi >= 1000 else f"{lo}-{hi}"


def scores_by_length(sources: list[str], hypotheses: list[str], references: list[str],
                     buckets: tuple[tuple[int, int], ...] = LENGTH_BUCKETS) -> dict[str, dict[str, float]]:
    """``{"all": {...}, "1-10": {...}, ...}`` with ``bleu``, ``chrf`` and ``n`` per source-length bucket (words)."""
    out = {}
    bleu, chrf = bleu_chrf(hypotheses, references)
    out["all"] = {"bleu": bleu, "chrf": chrf, "n": len(sources)}
    for lo, hi in buckets:
        idx = [i for i, s in enumerate(sources) if lo <= len(s.split()) <= hi]
        bleu, chrf = bleu_chrf([hypotheses[i] for i in idx], [references[i] for i in idx])
        out[bucket_name(lo, hi)] = {"bleu": bleu, "chrf": chrf, "n": len(idx)}
    return out


def cross_attention(model: nn.Module, tokenizer: Any, source: str, *, layer: int = -1, head: int | None = None,
                    max_new_tokens: int | None = None) -> tuple[Any, list[str], list[str], str]:
    """Translate ``source`` greedily and return ``(weights (T, S) numpy, source tokens, target tokens, translation)``:
    how much each produced token attended to each source token. RNN: its attention weights; Transformer: the
    cross-attention of decoder ``layer``, ``head`` (None: the mean over heads)."""
    from lmforge.generate import seq2seq_generate_ids

    c = model.config
    if getattr(c, "attention", "") == "none":
        raise ConfigError("this RNN has no attention (attention='none'): nothing to show")
    src = tokenizer.encode(source, add_special_tokens=False) + [c.eos_token_id]
    new = seq2seq_generate_ids(model, [src], max_new_tokens=max_new_tokens or c.block_size).new_ids[0]
    tgt = [*new, c.eos_token_id][: c.block_size]
    with torch.no_grad():
        _, attentions = model(torch.tensor([src]), torch.tensor([[c.decoder_start_token_id, *tgt[:-1]]]),
                              return_attn=True)
    if not -len(attentions) <= layer < len(attentions):
        raise ConfigError(f"layer: expected -{len(attentions)}..{len(attentions) - 1}, got {layer}")
    weights = attentions[layer][0].float()  # (H, T, S)
    if head is not None and not -weights.shape[0] <= head < weights.shape[0]:
        raise ConfigError(f"head: expected 0..{weights.shape[0] - 1}, got {head}")
    weights = weights.mean(0) if head is None else weights[head]

    def name(i: int) -> str:  # the token's text; its vocabulary entry when the text is a partial character
        text = tokenizer.decode([i], skip_special_tokens=False).strip()
        return text if text and text.isprintable() and "\ufffd" not in text else tokenizer.id_to_token(i)

    def names(ids: list[int]) -> list[str]:
        return [name(i) for i in ids]

    return weights.numpy(), names(src), names(tgt), tokenizer.decode(new).strip()
