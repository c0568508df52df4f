"""Fine-tuning a pre-trained BERT: sequence classification, sentence-pair classification and token tagging.

    from lmforge.train.finetune import finetune, predict
    result = finetune(MODEL, "train.csv", "classify", "runs/sentiment", eval_path="test.csv", epochs=3)
    predict("runs/sentiment", ["what a wonderful film"])     # [Prediction(label='pos', score=0.97)]

Data files (columns are named; defaults in brackets, change them with ``columns=``):

- CSV (``.csv``) / TSV (``.tsv``) with a header row, or JSON lines (``.jsonl``): classify reads [text], [label];
  pair reads [text], [text_pair], [label]; tag reads [tokens] and [tags] — JSON lists, or space-separated
  strings in CSV/TSV, one tag per word (BIO scheme, e.g. ``B-PER I-PER O``).
- fastText lines (any other extension) for classify: ``__label__pos a wonderful film``.

Which vector the classifier reads (``pooling``): a sentence-transformers model whose pooling is the mean of its
token states (all-MiniLM-L6-v2 and most sentence-embedding models) gets a classifier on that same mean — the
vector it was trained to make meaningful; any other BERT gets BERT's pooled ``[CLS]``. ``pooling=`` overrides.

Saving: a "cls" model is a Hugging Face folder (transformers' ``BertForSequenceClassification`` /
``BertForTokenClassification`` open it). A "mean" model has no HF class (``BertForSequenceClassification`` always
reads ``[CLS]``, and would load the weights without complaint and compute other labels), so it is saved as
lmforge's own folder (``lmforge.json`` + ``lmforge_model.safetensors`` + ``tokenizer.json``): ``lmforge.load``
and ``lmforge predict`` open it, while transformers finds neither ``config.json`` nor ``model.safetensors`` and
raises instead of misreading it. Both come with ``metrics.json`` (it records the pooling).

Metrics: accuracy and macro-F1 for classification come from scikit-learn; for tagging, entity-level
precision/recall/F1 as ``seqeval``/conlleval define them (a small function here: an entity counts only if its type
and its exact span are both right).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmforge.errors import ConfigError, FormatError, InputError
from lmforge.fileio import atomic_write_text
from lmforge.train.loop import TrainConfig, train

KINDS = ("classify", "pair", "tag")
POOLINGS = ("cls", "mean")
# Not "model.safetensors": transformers opens any folder holding that file (without config.json it assumes a
# default config and re-initialises what it cannot find, with only a warning). Under this name it finds no weights
# and raises, instead of computing labels from a model that is not this one.
MEAN_POOLED_WEIGHTS = "lmforge_model.safetensors"
IGNORE = -100
DEFAULT_COLUMNS = {"text": "text", "text_pair": "text_pair", "label": "label", "tokens": "tokens", "tags": "tags"}


# ------------------------------------------------------------------------------------------------ reading data
@dataclass
class Example:
    """One labelled input: ``text`` (a string, or a list of words for tagging), an optional ``pair`` and
    ``label`` (a string, or one tag per word)."""

    text: str | list[str]
    label: str | list[str]
    pair: str | None = None


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "fasttext")


def _read_text(path: Path, encoding: str) -> str:
    from lmforge.data.corpus import read_text_file

    if encoding.lower().replace("-", "") in ("utf8", "utf_8"):
        return read_text_file(path)
    try:
        return path.read_bytes().decode(encoding)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    except (UnicodeDecodeError, LookupError) as e:
        raise InputError(f"{path}: cannot decode as {encoding} ({e})") from None


def _read_rows(path: Path, fmt: str, encoding: str) -> list[dict[str, Any]]:
    text = _read_text(path, encoding)
    if fmt in ("csv", "tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="," if fmt == "csv" else "\t")
        return [row for row in reader if any((v or "").strip() for v in row.values())]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}:{n}: not a JSON object ({e.msg})") from None
        if not isinstance(row, dict):
            raise FormatError(f"{path}:{n}: expected a JSON object per line, got {type(row).__name__}")
        rows.append(row)
    return rows


def _column(row: dict, name: str, path: Path, n: int) -> Any:
    if name not in row or row[name] is None:
        raise InputError(f"{path}: row {n} has no column {name!r} (columns: {sorted(k for k in row if k)}); "
                         f"name the right one with --{'label' if 'label' in name else 'text'}-column")
    return row[name]


def _words(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else str(value).split()


def read_examples(path: str | os.PathLike, kind: str, columns: dict[str, str] | None = None,
                  encoding: str = "utf-8") -> list[Example]:
    """Labelled examples of a CSV / TSV / JSONL / fastText file for ``kind`` ("classify", "pair" or "tag").

    ``encoding``: of the file (e.g. "cp1252" for old Windows-made data sets)."""
    if kind not in KINDS:
        raise ConfigError(f"fine-tuning kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    cols = {**DEFAULT_COLUMNS, **(columns or {})}
    fmt = _file_format(path)
    examples: list[Example] = []
    if fmt == "fasttext":
        if kind != "classify":
            raise FormatError(f"{path}: fastText lines (__label__x text) hold classification data only; use "
                              f"CSV, TSV or JSONL for {kind!r}")
        for n, line in enumerate(_read_text(path, encoding).splitlines(), 1):
            if not line.strip():
                continue
            label, _, text = line.strip().partition(" ")
            if not label.startswith("__label__") or len(label) == len("__label__"):
                raise FormatError(f"{path}:{n}: expected a fastText line '__label__NAME text', got {line[:40]!r}")
            examples.append(Example(text.strip(), label[len("__label__"):]))
    else:
        for n, row in enumerate(_read_rows(path, fmt, encoding), 1):
            if kind == "tag":
                words, tags = _words(_column(row, cols["tokens"], path, n)), _words(_column(row, cols["tags"], path, n))
                if len(words) != len(tags):
                    raise InputError(f"{path}: row {n} has {len(words)} tokens but {len(tags)} tags")
                examples.append(Example(words, tags))
            else:
                pair = str(_column(row, cols["text_pair"], path, n)) if kind == "pair" else None
                examples.append(Example(str(_column(row, cols["text"], path, n)),
                                        str(_column(row, cols["label"], path, n)), pair))
    if not examples:
        raise InputError(f"{path}: no examples found")
    return examples


# ------------------------------------------------------------------------------------------------ metrics
def classification_scores(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 (the unweighted mean of each label's F1; a label never predicted nor present in
    ``gold`` is skipped).

    >>> classification_scores(["a", "a", "b"], ["a", "b", "b"])
    {'accuracy': 0.6666666666666666, 'f1_macro': 0.6666666666666666}
    """
    from sklearn.metrics import accuracy_score, f1_score

    if len(gold) != len(pred) or not gold:
        raise InputError(f"metrics: need equally many gold and predicted labels, got {len(gold)} and {len(pred)}")
    return {"accuracy": float(accuracy_score(gold, pred)),
            "f1_macro": float(f1_score(gold, pred, average="macro", zero_division=0.0))}


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entities ``(type, start, end)`` (end exclusive) of a BIO tag sequence, as conlleval/seqeval read it: an
    ``I-X`` that does not continue an ``X`` entity starts a new one.

    >>> sorted(entity_spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]))
    [('LOC', 3, 4), ('LOC', 4, 5), ('ORG', 5, 6), ('PER', 0, 2)]
    """
    spans, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, typ = tag.partition("-") if tag != "O" else ("O", "", "")
        continues = prefix == "I" and kind == typ and start is not None
        if start is not None and not continues:
            spans.add((kind, start, i))
            start, kind = None, None
        if prefix in ("B", "I") and not continues:
            start, kind = i, typ
    return spans


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged entity precision, recall, F1 (seqeval's default report) plus per-tag accuracy.

    >>> entity_scores([["B-X", "I-X", "O"]], [["B-X", "O", "O"]])["f1"]
    0.0
    """
    tp = n_pred = n_gold = correct_tags = n_tags = 0
    for g, p in zip(gold, pred, strict=True):
        gs, ps = entity_spans(g), entity_spans(p)
        tp += len(gs & ps)
        n_pred += len(ps)
        n_gold += len(gs)
        correct_tags += sum(a == b for a, b in zip(g, p, strict=True))
        n_tags += len(g)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": correct_tags / max(n_tags, 1)}


# ------------------------------------------------------------------------------------------------ encoding
@dataclass
class Encoded:
    """Padded arrays ``(N, T)`` for the model; ``labels`` is ``(N,)`` (classify/pair) or ``(N, T)`` (tag, with
    ``IGNORE`` on special tokens, padding and non-first word pieces)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    labels: np.ndarray
    word_index: list[list[int]] = field(default_factory=list)  # tag: token position of each word's first piece


def encode_examples(tokenizer: Any, examples: Sequence[Example], kind: str, labels: Sequence[str],
                    max_length: int) -> Encoded:
    """Tokenize examples (pairs are cut longest-first to fit ``max_length``) and map labels to ids."""
    label_id = {name: i for i, name in enumerate(labels)}

    def lid(name: str) -> int:
        if name not in label_id:
            raise InputError(f"label {name!r} does not occur in the training data (labels: {list(labels)})")
        return label_id[name]

    if kind != "tag":
        enc = tokenizer.encode_batch([e.text for e in examples], [e.pair for e in examples] if kind == "pair"
                                     else None, padding=True, truncation=True, max_length=max_length,
                                     return_tensors="np")
        return Encoded(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"],
                       np.array([lid(e.label) for e in examples], dtype=np.int64))
    cls_id, sep_id, pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id or 0
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else pad_id
    rows, tag_rows, word_index = [], [], []
    for e in examples:
        ids, tags, firsts = [cls_id], [IGNORE], []
        for word, tag in zip(e.text, e.label, strict=True):
            pieces = tokenizer.encode(word, add_special_tokens=False) or [unk]
            if len(ids) + len(pieces) > max_length - 1:
                break  # truncation: the words that do not fit are not tagged (predict tags them "O")
            firsts.append(len(ids))
            ids += pieces
            tags += [lid(tag)] + [IGNORE] * (len(pieces) - 1)  # a word's label sits on its first piece
        rows.append([*ids, sep_id])
        tag_rows.append([*tags, IGNORE])
        word_index.append(firsts)
    T = max(len(r) for r in rows)
    input_ids = np.full((len(rows), T), pad_id, dtype=np.int64)
    tag_arr = np.full((len(rows), T), IGNORE, dtype=np.int64)
    mask = np.zeros((len(rows), T), dtype=np.int64)
    for i, (r, t) in enumerate(zip(rows, tag_rows, strict=True)):
        input_ids[i, : len(r)], tag_arr[i, : len(t)], mask[i, : len(r)] = r, t, 1
    return Encoded(input_ids, mask, np.zeros_like(input_ids), tag_arr, word_index)


def _batch(enc: Encoded, rows: np.ndarray) -> dict[str, torch.Tensor]:
    T = int(enc.attention_mask[rows].sum(axis=1).max())  # pad only to this batch's longest row
    out = {"input_ids": enc.input_ids[rows, :T], "attention_mask": enc.attention_mask[rows, :T],
           "token_type_ids": enc.token_type_ids[rows, :T],
           "labels": enc.labels[rows, :T] if enc.labels.ndim == 2 else enc.labels[rows]}
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


class FinetuneTask:
    """Shuffled passes over the training examples (an epoch = ceil(N / batch) steps) for the training loop."""

    reports_perplexity = False  # a classifier's cross-entropy is not a language model's perplexity

    def __init__(self, train_set: Encoded, eval_set: Encoded | None, seed: int = 0) -> None:
        self.train_set, self.eval_set = train_set, eval_set
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(train_set.input_ids))
        self.pos = 0

    def next_batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        rows = []
        while len(rows) < batch_size:
            if self.pos >= len(self.order):
                self.order, self.pos = self.rng.permutation(len(self.order)), 0
            take = self.order[self.pos : self.pos + batch_size - len(rows)]
            rows.extend(take.tolist())
            self.pos += len(take)
        return _batch(self.train_set, np.array(rows))

    def eval_batches(self, batch_size: int) -> list[dict[str, torch.Tensor]]:
        if self.eval_set is None:
            return []
        n = len(self.eval_set.input_ids)
        return [_batch(self.eval_set, np.arange(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch["labels"].reshape(-1),
                               ignore_index=IGNORE)

    def tokens_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())

    def state_dict(self) -> dict:
        return {"order": self.order.tolist(), "pos": self.pos, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.pos = np.array(state["order"]), state["pos"]
        self.rng.bit_generator.state = state["rng"]


# ------------------------------------------------------------------------------------------------ predicting
@torch.no_grad()
def predict_encoded(model: nn.Module, enc: Encoded, batch_size: int = 32) -> np.ndarray:
    """Probabilities: ``(N, n_labels)`` for classify/pair, ``(N, T, n_labels)`` for tag (batched, no grad)."""
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, len(enc.input_ids), batch_size):
        b = _batch(enc, np.arange(s, min(s + batch_size, len(enc.input_ids))))
        probs = model(b["input_ids"], b["attention_mask"], b["token_type_ids"]).float().softmax(-1).numpy()
        if probs.ndim == 3:  # tag: back to the full width so rows of different batches line up
            probs = np.pad(probs, ((0, 0), (0, enc.input_ids.shape[1] - probs.shape[1]), (0, 0)))
        out.append(probs)
    model.train(was_training)
    return np.concatenate(out)


def evaluate_examples(model: nn.Module, tokenizer: Any, examples: Sequence[Example], kind: str,
                      max_length: int, batch_size: int = 32) -> dict[str, float]:
    """Accuracy and F1 of ``model`` (with a classify/tag head) on labelled examples."""
    labels = model.config.labels
    enc = encode_examples(tokenizer, examples, kind, labels, max_length)
    probs = predict_encoded(model, enc, batch_size)
    if kind != "tag":
        return classification_scores([e.label for e in examples], [labels[i] for i in probs.argmax(-1)])
    pred = [_word_tags(p, firsts, len(e.text), labels) for p, firsts, e in zip(probs, enc.word_index, examples,
                                                                                 strict=True)]
    return entity_scores([e.label for e in examples], pred)


def _word_tags(probs: np.ndarray, firsts: list[int], n_words: int, labels: Sequence[str]) -> list[str]:
    tags = [labels[int(probs[t].argmax())] for t in firsts]
    return tags + ["O"] * (n_words - len(tags))  # words cut by truncation


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class FinetuneResult:
    """Where the model went, its labels, the training losses and the evaluation metrics."""

    out_dir: Path
    labels: list[str]
    losses: list[float]
    metrics: dict[str, float] | None
    pooling: str | None = None  # the classifier's input ("cls" | "mean"); None for tagging


def default_pooling(lm: Any) -> str:
    """The classifier input that suits the loaded model ``lm``: "mean" for a sentence-transformers folder that
    mean-pools (``modules.json`` + ``1_Pooling/config.json``) or a model fine-tuned with mean pooling, else "cls".

    all-MiniLM-L6-v2 → "mean"; bert-base-uncased (no modules.json) → "cls".
    """
    cfg = lm.model.config
    if cfg.head == "classify":
        return cfg.classifier_pooling
    path = Path(lm.path) if lm.path is not None else None
    sentence = getattr(lm, "sentence_config", None)
    if path is not None and (path / "modules.json").is_file() and sentence is not None \
            and tuple(sentence.pooling) == ("mean",):
        return "mean"
    return "cls"


def _save_folder(model: nn.Module, lm: Any, folder: Path) -> None:
    from lmforge.io.hf_bert import TOKENIZER_FILES, save_hf_bert
    from lmforge.io.hf_files import transformer_folder
    from lmforge.io.lmforge_format import save_model

    # Both savers replace the folder's model files as a whole (lmforge.io.folders), so a re-used out folder never
    # keeps the other format's files (lmforge.load prefers lmforge.json, transformers reads config.json).
    if model.config.head == "classify" and model.config.classifier_pooling == "mean":
        save_model(folder, model, lm.tokenizer, weights_file=MEAN_POOLED_WEIGHTS)
        return
    src = transformer_folder(lm.path) if lm.path is not None else None
    if src is not None and any((src / n).is_file() for n in TOKENIZER_FILES):
        save_hf_bert(model, folder, tokenizer_source=src)
    else:
        save_hf_bert(model, folder, tokenizer=lm.tokenizer)


def finetune(
    model_path: str | os.PathLike,
    train_path: str | os.PathLike,
    kind: str,
    out_dir: str | os.PathLike,
    *,
    eval_path: str | os.PathLike | None = None,
    columns: dict[str, str] | None = None,
    epochs: float = 3.0,
    lr: float = 5e-5,
    batch_size: int = 16,
    max_length: int = 128,
    seed: int = 0,
    progress: bool = True,
    train_examples: Sequence[Example] | None = None,
    eval_examples: Sequence[Example] | None = None,
    encoding: str = "utf-8",
    pooling: str | None = None,
) -> FinetuneResult:
    """Fine-tune the BERT at ``model_path`` on a labelled file and save it to ``out_dir`` (module docstring).

    ``kind``: "classify" (one label per text), "pair" (one label per text pair, e.g. paraphrase), "tag" (one
    label per word). ``pooling`` ("cls" | "mean", classify/pair only): the classifier's input; None picks it from
    the model (:func:`default_pooling`). ``train_examples``/``eval_examples`` replace reading the files.
    """
    from lmforge.io import load_parts
    from lmforge.models.bert import Bert

    if kind not in KINDS:
        raise ConfigError(f"fine-tuning kind must be one of {KINDS}, got {kind!r}")
    if epochs <= 0 or batch_size < 1 or lr <= 0:
        raise ConfigError(f"fine-tuning: epochs, batch_size and lr must be positive (got {epochs}, {batch_size}, {lr})")
    if pooling is not None and pooling not in POOLINGS:
        raise ConfigError(f"fine-tuning: pooling must be one of {POOLINGS}, got {pooling!r}")
    if pooling is not None and kind == "tag":
        raise ConfigError("fine-tuning: pooling chooses a sentence classifier's input; 'tag' labels every token")
    train_ex = (list(train_examples) if train_examples is not None
                else read_examples(train_path, kind, columns, encoding))
    eval_ex = (list(eval_examples) if eval_examples is not None
               else read_examples(eval_path, kind, columns, encoding) if eval_path is not None else None)
    lm = load_parts(model_path)
    if not isinstance(lm.model, Bert):
        raise ConfigError(f"{model_path}: fine-tuning needs a BERT encoder, got {type(lm.model).__name__}")
    if kind == "tag":
        labels = sorted({t for e in train_ex for t in e.label})
    else:
        labels = sorted({e.label for e in train_ex})
    if len(labels) < 2:
        raise InputError(f"{train_path}: the training data holds only the label(s) {labels}; need at least 2")
    max_length = min(max_length, lm.model.config.block_size)
    if kind != "tag":
        pooling = pooling or default_pooling(lm)
    torch.manual_seed(seed)  # the new head's initial weights
    model = lm.model.with_head("classify" if kind in ("classify", "pair") else "tag", labels, pooling)
    train_set = encode_examples(lm.tokenizer, train_ex, kind, labels, max_length)
    eval_set = encode_examples(lm.tokenizer, eval_ex, kind, labels, max_length) if eval_ex else None
    steps = max(1, math.ceil(epochs * len(train_ex) / batch_size))
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=0.0, warmup_steps=steps // 10,
                         weight_decay=0.01, beta2=0.999, eval_every=0, eval_batches=10**6, checkpoint_every=0,
                         keep_checkpoints=1, log_every=max(1, steps // 20), seed=seed)
    out = Path(out_dir)
    result = train(model, FinetuneTask(train_set, eval_set, seed), config, out, progress=progress,
                   model_config=model.config.to_dict(),
                   export=lambda _state, folder: _save_folder(model, lm, folder))
    metrics = evaluate_examples(model, lm.tokenizer, eval_ex, kind, max_length) if eval_ex else None
    if metrics is not None:
        info = {"kind": kind, "pooling": pooling} if pooling else {"kind": kind}
        atomic_write_text(out / "metrics.json", json.dumps({**info, **metrics}, indent=2) + "\n")
    return FinetuneResult(out, labels, result.losses, metrics, pooling)


@dataclass
class Prediction:
    """A predicted label and its probability; for tagging, ``tags`` holds ``(word, tag)`` per word."""

    label: str | None
    score: float
    tags: list[tuple[str, str]] | None = None


def predict(model: Any, texts: Sequence[str], pairs: Sequence[str] | None = None, *, max_length: int = 512,
            batch_size: int = 32) -> list[Prediction]:
    """Labels of ``texts`` (and ``pairs``) from a fine-tuned model (a path, an ``LM`` or ``ModelParts``): one label
    per text for a classify head, one tag per whitespace-separated word for a tag head."""
    from lmforge.io import load_parts

    lm = load_parts(model) if isinstance(model, (str, os.PathLike)) else model
    cfg = getattr(lm.model, "config", None)
    if getattr(cfg, "head", None) not in ("classify", "tag"):
        raise ConfigError(f"{lm.path}: predict needs a fine-tuned classification or tagging model "
                          f"(its config.json architecture is {getattr(cfg, 'head', '?')!r})")
    max_length = min(max_length, cfg.block_size)
    if cfg.head == "classify":
        examples = [Example(t, cfg.labels[0], pairs[i] if pairs is not None else None) for i, t in enumerate(texts)]
        enc = encode_examples(lm.tokenizer, examples, "pair" if pairs is not None else "classify", cfg.labels,
                              max_length)
        probs = predict_encoded(lm.model, enc, batch_size)
        return [Prediction(cfg.labels[int(p.argmax())], float(p.max())) for p in probs]
    examples = [Example(t.split(), [cfg.labels[0]] * len(t.split())) for t in texts]
    enc = encode_examples(lm.tokenizer, examples, "tag", cfg.labels, max_length)
    probs = predict_encoded(lm.model, enc, batch_size)
    out = []
    for p, firsts, e in zip(probs, enc.word_index, examples, strict=True):
        tags = _word_tags(p, firsts, len(e.text), cfg.labels)
        out.append(Prediction(None, float(np.mean([p[t].max() for t in firsts])) if firsts else 0.0,
                              list(zip(e.text, tags, strict=True))))
    return out
