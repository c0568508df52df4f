"""What each step of text representation buys: one labelled data set, the same folds, every representation.

    from lmforge.compare.classify import compare_classify, negation_task
    report = compare_classify(negation_task(400), "runs/compare", arms=["tfidf-1-2", "bert-mlm"])
    print(format_table(report))

Arms (each fits on the training folds only and predicts the held-out fold):

- ``counts-1`` / ``counts-1-2``: bag-of-words counts (unigrams; unigrams + bigrams) + logistic regression;
- ``tfidf-1`` / ``tfidf-1-2``: the same with tf-idf weights;
- ``word2vec``: the mean of word2vec vectors (trained on the training folds, or once on ``pretrain_corpus``)
  + logistic regression;
- ``bert-mlm``: a small BERT pre-trained with masked-LM (on the training folds' text, or once on
  ``pretrain_corpus``), then fine-tuned;
- ``encoder-frozen`` / ``encoder-finetuned`` (with ``encoder=``, e.g. all-MiniLM-L6-v2): its sentence embeddings
  + logistic regression, and the whole encoder fine-tuned.

Folds come from scikit-learn's ``StratifiedGroupKFold`` with groups = the normalised text, so two copies of a
sentence never straddle the training and test side. Logistic regression and the metrics are scikit-learn's.
Each arm's per-fold results are saved in ``out_dir/arms/NAME.json`` as soon as a fold ends: a re-run with the same
data and settings skips finished arms and folds. The report is ``report.json``, ``report.md`` and ``report.png``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.errors import ConfigError, InputError
from lmforge.fileio import atomic_write_text, read_json

ARMS = ("counts-1", "counts-1-2", "tfidf-1", "tfidf-1-2", "word2vec", "bert-mlm", "encoder-frozen",
        "encoder-finetuned")
ENCODER_ARMS = ("encoder-frozen", "encoder-finetuned")
DESCRIPTIONS = {
    "counts-1": "bag-of-words counts, unigrams + logistic regression",
    "counts-1-2": "bag-of-words counts, uni+bigrams + logistic regression",
    "tfidf-1": "tf-idf, unigrams + logistic regression",
    "tfidf-1-2": "tf-idf, uni+bigrams + logistic regression",
    "word2vec": "mean word2vec vector + logistic regression",
    "bert-mlm": "small BERT, masked-LM pre-trained, fine-tuned",
    "encoder-frozen": "pre-trained encoder, frozen sentence embedding + logistic regression",
    "encoder-finetuned": "pre-trained encoder, fine-tuned",
}
REPORT_VERSION = 1


# ------------------------------------------------------------------------------------------------ data
@dataclass
class LabelledTexts:
    """Texts and their labels (strings), with a name for reports."""

    texts: list[str]
    labels: list[str]
    name: str = "data"

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise InputError(f"{self.name}: {len(self.texts)} texts but {len(self.labels)} labels")
        self.texts = [str(t) for t in self.texts]
        self.labels = [str(x) for x in self.labels]


def read_labelled(path: str | os.PathLike, text_col: str = "text", label_col: str = "label",
                  encoding: str = "utf-8") -> LabelledTexts:
    """A CSV / TSV (header row) / JSONL file with a text and a label column, or fastText ``__label__x text`` lines
    (any other extension). Missing columns, empty files and undecodable bytes raise InputError/FormatError."""
    from lmforge.train.finetune import read_examples

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    examples = read_examples(path, "classify", {"text": text_col, "label": label_col}, encoding)
    for n, e in enumerate(examples, 1):
        if not str(e.label).strip():
            raise InputError(f"{path}: example {n} has an empty label")
    return LabelledTexts([e.text for e in examples], [e.label for e in examples], name=path.name)


_NOUNS = ["food", "service", "film", "hotel", "book", "room", "staff", "music", "plot", "coffee", "view", "show"]
_GOOD = ["good", "great", "nice", "fine", "tasty", "lovely", "superb", "pleasant"]
_BAD = ["bad", "awful", "poor", "bland", "rude", "dull", "terrible", "boring"]
_GAP = ["at", "all", "really", "that", "so", "very", "quite", "truly", "even", "remotely"]
_OPENERS = ["to be honest", "i must say", "frankly", "in short", "all in all", "overall", "sadly", "luckily"]


def negation_sentence(rng: np.random.Generator) -> tuple[str, str]:
    """One sentence of the negation task and its label: ``("the film , frankly , it was not at all good , it was
    so bad", "neg")``.

    Every sentence holds one positive and one negative adjective, one ``not`` and gap words from one pool; the
    ``not`` sits 2–5 words before the adjective it negates, and the two clauses come in random order. So every
    unigram and every bigram occurs equally often under both labels: only word order decides.
    """
    label = "pos" if rng.random() < 0.5 else "neg"
    kept, negated = (_GOOD, _BAD) if label == "pos" else (_BAD, _GOOD)

    def gap() -> str:  # 1-4 words: the negated adjective is 2-5 words after "not"
        return " ".join(rng.choice(_GAP, size=int(rng.integers(1, 5))))

    clauses = [f"it was not {gap()} {rng.choice(negated)}", f"it was {gap()} {rng.choice(kept)}"]
    if rng.random() < 0.5:
        clauses.reverse()
    return f"the {rng.choice(_NOUNS)} , {rng.choice(_OPENERS)} , {clauses[0]} , {clauses[1]}", label


def negation_task(n: int = 400, seed: int = 0) -> LabelledTexts:
    """``n`` sentences where word order decides the label (:func:`negation_sentence`)."""
    rng = np.random.default_rng(seed)
    pairs = [negation_sentence(rng) for _ in range(n)]
    return LabelledTexts([p[0] for p in pairs], [p[1] for p in pairs], name=f"negation (synthetic, n={n})")


def presence_task(n: int = 400, seed: int = 0) -> LabelledTexts:
    """``n`` sentences whose label is whether a positive or a negative adjective occurs in them:
    ``("the hotel , overall , it was really lovely", "pos")``. Any bag of words decides it."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        label = "pos" if rng.random() < 0.5 else "neg"
        adjective = rng.choice(_GOOD if label == "pos" else _BAD)
        gap = " ".join(rng.choice(_GAP, size=int(rng.integers(1, 4))))
        texts.append(f"the {rng.choice(_NOUNS)} , {rng.choice(_OPENERS)} , it was {gap} {adjective}")
        labels.append(label)
    return LabelledTexts(texts, labels, name=f"presence (synthetic, n={n})")


BUILTIN_TASKS: dict[str, Callable[..., LabelledTexts]] = {"negation": negation_task, "presence": presence_task}


def normalise(text: str) -> str:
    """The text that decides "the same example": lower case, runs of non-word characters collapsed.

    >>> normalise("  The food, was GOOD! ")
    'the food was good'
    """
    return " ".join(re.findall(r"\w+", text.lower()))


_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: ``words("Not bad, really.") -> ['not', 'bad', ',', 'really', '.']``."""
    return _WORD.findall(text.lower())


# ------------------------------------------------------------------------------------------------ folds
def make_folds(data: LabelledTexts, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(train_idx, test_idx), ...]`` from StratifiedGroupKFold (groups = normalised text, shuffled by ``seed``).

    Refuses data a fair k-fold estimate cannot come from: one class, a class with fewer distinct texts than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if n_folds < 2:
        raise ConfigError(f"folds: need at least 2, got {n_folds}")
    if not data.texts:
        raise InputError(f"{data.name}: no examples")
    for n, label in enumerate(data.labels, 1):
        if not label.strip():
            raise InputError(f"{data.name}: example {n} has an empty label")
    counts = Counter(data.labels)
    if len(counts) < 2:
        raise InputError(f"{data.name}: every example has the label {next(iter(counts))!r}; classification needs "
                         f"at least 2 classes")
    groups = [normalise(t) for t in data.texts]
    distinct = Counter(lab for _, lab in {(g, lab) for g, lab in zip(groups, data.labels, strict=True)})
    small = {lab: c for lab, c in distinct.items() if c < n_folds}
    if small:
        raise InputError(f"{data.name}: {n_folds} folds need at least {n_folds} distinct examples of every class; "
                         f"too few of {small}. Use fewer --folds or more data")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    y = np.array(data.labels)
    return [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(np.zeros(len(y)), y, groups)]


# ------------------------------------------------------------------------------------------------ settings
@dataclass
class ClassifySettings:
    """Everything besides the data that decides the numbers (it is part of the resume key)."""

    folds: int = 5
    seed: int = 0
    # word2vec
    w2v_size: int = 100
    w2v_epochs: int = 20
    w2v_window: int = 5
    # the small BERT: MLM pre-training, then fine-tuning
    bert_width: int = 64
    bert_layers: int = 2
    bert_heads: int = 4
    bert_vocab: int = 2000
    mlm_steps: int = 300
    mlm_seq_len: int = 32
    mlm_lr: float = 2e-3
    bert_epochs: float = 20.0
    bert_lr: float = 1e-3
    # the pre-trained encoder
    encoder_epochs: float = 4.0
    encoder_lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 128


def small_bert_fields(s: ClassifySettings) -> dict:
    """The small BERT's BertConfig fields — the one place this module names them.

    ``small_bert_fields(ClassifySettings())`` → ``{"n_embd": 64, "n_layer": 2, "n_head": 4, "ffn_hidden": 256, ...}``
    """
    return {"n_embd": s.bert_width, "n_layer": s.bert_layers, "n_head": s.bert_heads, "ffn_hidden": 4 * s.bert_width,
            "block_size": max(s.mlm_seq_len, s.max_length), "dropout": 0.1}


# ------------------------------------------------------------------------------------------------ arms
def _logistic(seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, random_state=seed)


def _bag_of_words_arm(ngrams: tuple[int, int], tfidf: bool):
    def fit(train_texts: list[str], train_labels: list[str], ctx: _Context) -> Callable[[list[str]], list[str]]:
        from lmforge.represent import BagOfWords

        bow = BagOfWords(ngram_range=ngrams, tfidf=tfidf, token_pattern=r"\w+")
        clf = _logistic(ctx.settings.seed).fit(bow.fit_transform(train_texts), train_labels)
        return lambda texts: list(clf.predict(bow.transform(texts)))

    return fit


def _mean_vectors(wv: Any, texts: list[str]) -> np.ndarray:
    """``(N, D)``: the mean vector of each text's known words (zeros when none is known)."""
    out = np.zeros((len(texts), wv.vector_size), dtype=np.float32)
    for i, t in enumerate(texts):
        known = [w for w in words(t) if w in wv]
        if known:
            out[i] = wv[known].mean(axis=0)
    return out


def _corpus_sentences(path: str) -> list[list[str]]:
    from lmforge.data.corpus import iter_lines

    return [ws for line in iter_lines([path]) if (ws := words(line))]


def _word2vec_arm(train_texts: list[str], train_labels: list[str], ctx: _Context):
    from lmforge.represent import Word2Vec

    s = ctx.settings

    def w2v(sentences: list[list[str]]) -> Any:
        return Word2Vec(sentences, vector_size=s.w2v_size, window=s.w2v_window, min_count=1, epochs=s.w2v_epochs,
                        seed=s.seed + 1, workers=1).wv

    if ctx.pretrain_corpus is not None:
        if "word2vec" not in ctx.shared:  # external text: trained once, shared by every fold (no test fold in it)
            ctx.shared["word2vec"] = w2v(_corpus_sentences(ctx.pretrain_corpus))
        wv = ctx.shared["word2vec"]
    else:
        wv = w2v([words(t) for t in train_texts])
    clf = _logistic(s.seed).fit(_mean_vectors(wv, train_texts), train_labels)
    return lambda texts: list(clf.predict(_mean_vectors(wv, texts)))


def _pretrain_small_bert(source: str, out: Path, ctx: _Context) -> Path:
    from lmforge.train.mlm import pretrain_bert

    s = ctx.settings
    train = {"steps": s.mlm_steps, "batch_size": 32, "lr": s.mlm_lr, "warmup_steps": max(1, s.mlm_steps // 10),
             "eval_every": 0, "checkpoint_every": 0, "log_every": max(1, s.mlm_steps // 10), "seed": s.seed}
    pretrain_bert([source], out, preset="bert-tiny", vocab_size=s.bert_vocab, seq_len=s.mlm_seq_len,
                  model_overrides=small_bert_fields(s), train_overrides=train, progress=False)
    return out


def _finetuned(model_path: Path | str, train_texts: list[str], train_labels: list[str], out: Path, epochs: float,
               lr: float, ctx: _Context, pooling: str | None):
    from lmforge.train.finetune import Example, finetune, predict

    s = ctx.settings
    examples = [Example(t, y) for t, y in zip(train_texts, train_labels, strict=True)]
    result = finetune(model_path, "training folds", "classify", out, train_examples=examples, epochs=epochs, lr=lr,
                      batch_size=s.batch_size, max_length=s.max_length, seed=s.seed, progress=False, pooling=pooling)
    return lambda texts: [p.label for p in predict(result.out_dir, texts, max_length=s.max_length)]


def _bert_mlm_arm(train_texts: list[str], train_labels: list[str], ctx: _Context):
    if ctx.pretrain_corpus is not None:
        if "bert" not in ctx.shared:
            ctx.shared["bert"] = _pretrain_small_bert(ctx.pretrain_corpus, ctx.scratch / "bert-pretrained", ctx)
        pretrained = ctx.shared["bert"]
    else:
        fold_text = ctx.scratch / "fold-text.txt"
        atomic_write_text(fold_text, "\n".join(train_texts) + "\n")
        pretrained = _pretrain_small_bert(str(fold_text), ctx.fresh("bert-pretrained"), ctx)
    s = ctx.settings
    return _finetuned(pretrained, train_texts, train_labels, ctx.fresh("bert-finetuned"), s.bert_epochs, s.bert_lr,
                      ctx, "mean")


def _encoder_embed(ctx: _Context) -> Callable[[list[str]], np.ndarray]:
    """The pre-trained encoder's sentence embeddings, pooled as its sentence-transformers config says (loaded once)."""
    from lmforge.embed import embed
    from lmforge.io import load_parts

    if "encoder" not in ctx.shared:
        ctx.shared["encoder"] = load_parts(ctx.encoder)
    parts = ctx.shared["encoder"]
    return lambda texts: embed(parts.model, parts.tokenizer, texts, 32, parts.sentence_config)


def _encoder_frozen_arm(train_texts: list[str], train_labels: list[str], ctx: _Context):
    encode = _encoder_embed(ctx)
    clf = _logistic(ctx.settings.seed).fit(encode(train_texts), train_labels)
    return lambda texts: list(clf.predict(encode(texts)))


def _encoder_finetuned_arm(train_texts: list[str], train_labels: list[str], ctx: _Context):
    s = ctx.settings
    return _finetuned(ctx.encoder, train_texts, train_labels, ctx.fresh("encoder-finetuned"), s.encoder_epochs,
                      s.encoder_lr, ctx, None)


ARM_FUNCTIONS: dict[str, Callable] = {
    "counts-1": _bag_of_words_arm((1, 1), False),
    "counts-1-2": _bag_of_words_arm((1, 2), False),
    "tfidf-1": _bag_of_words_arm((1, 1), True),
    "tfidf-1-2": _bag_of_words_arm((1, 2), True),
    "word2vec": _word2vec_arm,
    "bert-mlm": _bert_mlm_arm,
    "encoder-frozen": _encoder_frozen_arm,
    "encoder-finetuned": _encoder_finetuned_arm,
}


@dataclass
class _Context:
    settings: ClassifySettings
    scratch: Path
    encoder: str | None = None
    pretrain_corpus: str | None = None
    shared: dict[str, Any] = field(default_factory=dict)  # things trained once on external text, per run

    def fresh(self, name: str) -> Path:
        """An empty folder under the scratch folder (training runs refuse a folder that holds an old run)."""
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.scratch))


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class ArmResult:
    """One arm's per-fold accuracy, macro-F1 and times (seconds: fitting on the training folds; predicting)."""

    name: str
    description: str
    accuracy: list[float] = field(default_factory=list)
    macro_f1: list[float] = field(default_factory=list)
    train_s: list[float] = field(default_factory=list)
    predict_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Means and (population) standard deviations over the folds."""
        out = {}
        for key in ("accuracy", "macro_f1", "train_s", "predict_s"):
            values = np.array(getattr(self, key), dtype=np.float64)
            out[f"{key}_mean"], out[f"{key}_std"] = float(values.mean()), float(values.std())
        return out


@dataclass
class ClassifyReport:
    """The result of :func:`compare_classify` (also written to ``out_dir/report.json``)."""

    data: str
    n_examples: int
    labels: dict[str, int]
    settings: dict
    folds: list[list[int]]  # the test indices of each fold
    arms: list[ArmResult]
    out_dir: str

    def arm(self, name: str) -> ArmResult:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"version": REPORT_VERSION, "data": self.data, "n_examples": self.n_examples, "labels": self.labels,
                "settings": self.settings, "folds": self.folds,
                "arms": [{**asdict(a), **a.summary()} for a in self.arms]}


def _data_key(data: LabelledTexts, settings: ClassifySettings, encoder: str | None, corpus: str | None) -> str:
    h = hashlib.sha256()
    for t, y in zip(data.texts, data.labels, strict=True):
        h.update(t.encode() + b"\x00" + y.encode() + b"\x01")
    h.update(json.dumps([asdict(settings), encoder, corpus], sort_keys=True).encode())
    return h.hexdigest()


def _log(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def compare_classify(
    data: LabelledTexts,
    out_dir: str | os.PathLike,
    *,
    arms: Sequence[str] | None = None,
    settings: ClassifySettings | None = None,
    encoder: str | os.PathLike | None = None,
    pretrain_corpus: str | os.PathLike | None = None,
    progress: bool = True,
) -> ClassifyReport:
    """Cross-validate every arm on ``data``; write ``report.json``, ``report.md``, ``report.png`` to ``out_dir``.

    ``arms``: names from :data:`ARMS` (default: all; the encoder arms only with ``encoder``). Finished arms and
    folds found in ``out_dir/arms/`` (same data, settings, encoder and corpus) are reused, not recomputed.
    """
    from sklearn.metrics import accuracy_score, f1_score

    settings = settings or ClassifySettings()
    encoder = os.fspath(encoder) if encoder is not None else None
    corpus = os.fspath(pretrain_corpus) if pretrain_corpus is not None else None
    if arms is None:
        arms = [a for a in ARMS if encoder is not None or a not in ENCODER_ARMS]
    for a in arms:
        if a not in ARM_FUNCTIONS:
            raise ConfigError(f"arm {a!r}: expected one of {', '.join(ARMS)}")
        if a in ENCODER_ARMS and encoder is None:
            raise ConfigError(f"arm {a!r} needs a pre-trained encoder (--encoder PATH)")
    if encoder is not None and not Path(encoder).exists():
        raise InputError(f"{encoder}: no such encoder folder")
    if corpus is not None and not Path(corpus).exists():
        raise InputError(f"{corpus}: no such pre-training corpus")
    folds = make_folds(data, settings.folds, settings.seed)
    out = Path(out_dir)
    (out / "arms").mkdir(parents=True, exist_ok=True)
    key = _data_key(data, settings, encoder, corpus)
    results = []
    with tempfile.TemporaryDirectory(prefix="scratch-", dir=out) as scratch:
        ctx = _Context(settings, Path(scratch), encoder, corpus)
        for i, name in enumerate(arms, 1):
            path = out / "arms" / f"{name}.json"
            result = ArmResult(name, DESCRIPTIONS[name])
            if path.is_file():
                saved = read_json(path)
                if saved.get("key") == key:
                    result = ArmResult(**saved["result"])
            for k, (tr, te) in enumerate(folds, 1):
                if k <= len(result.accuracy):
                    _log(progress, f"[{i}/{len(arms)}] {name} fold {k}/{len(folds)}: done earlier "
                                   f"(accuracy {result.accuracy[k - 1]:.3f})")
                    continue
                _log(progress, f"[{i}/{len(arms)}] {name} fold {k}/{len(folds)} ...")
                train_texts = [data.texts[j] for j in tr]
                train_labels = [data.labels[j] for j in tr]
                test_texts = [data.texts[j] for j in te]
                test_labels = [data.labels[j] for j in te]
                start = time.perf_counter()
                predict = ARM_FUNCTIONS[name](train_texts, train_labels, ctx)
                fitted = time.perf_counter()
                pred = predict(test_texts)
                done = time.perf_counter()
                result.accuracy.append(float(accuracy_score(test_labels, pred)))
                result.macro_f1.append(float(f1_score(test_labels, pred, average="macro")))
                result.train_s.append(fitted - start)
                result.predict_s.append(done - fitted)
                atomic_write_text(path, json.dumps({"key": key, "result": asdict(result)}, indent=1) + "\n")
                _log(progress, f"[{i}/{len(arms)}] {name} fold {k}/{len(folds)}: accuracy {result.accuracy[-1]:.3f}"
                               f" ({fitted - start:.1f}s)")
            results.append(result)
    report = ClassifyReport(data.name, len(data.texts), dict(sorted(Counter(data.labels).items())),
                            asdict(settings) | {"encoder": encoder, "pretrain_corpus": corpus},
                            [te.tolist() for _, te in folds], results, str(out))
    write_report(report, out)
    return report


# ------------------------------------------------------------------------------------------------ the report
def _rows(report: ClassifyReport) -> list[list[str]]:
    rows = []
    for a in report.arms:
        s = a.summary()
        rows.append([a.name, f"{s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f}",
                     f"{s['macro_f1_mean']:.3f} ± {s['macro_f1_std']:.3f}", f"{s['train_s_mean']:.2f}",
                     f"{s['predict_s_mean']:.3f}", a.description])
    return rows


HEADER = ["arm", "accuracy", "macro-F1", "train s/fold", "predict s/fold", "what"]


def format_table(report: ClassifyReport) -> str:
    """The terminal table: one row per arm, mean ± std over the folds."""
    rows = [HEADER, *_rows(report)]
    widths = [max(len(r[c]) for r in rows) for c in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(report: ClassifyReport) -> str:
    """The Markdown report: what was compared, then the table."""
    labels = ", ".join(f"{k} {v}" for k, v in report.labels.items())
    lines = [f"# compare classify: {report.data}", "",
             f"{report.n_examples} examples ({labels}); {len(report.folds)}-fold StratifiedGroupKFold "
             f"(groups = normalised text), seed {report.settings['seed']}. Mean ± standard deviation over the folds.",
             "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    return "\n".join(lines) + "\n"


def plot_report(report: ClassifyReport, png_path: str | os.PathLike) -> None:
    """Bar chart: accuracy and macro-F1 of every arm, error bars = standard deviation over the folds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = [a.summary() for a in report.arms]
    x = np.arange(len(report.arms))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(x) + 2), 4.2), dpi=100)
    for offset, key, label in ((-0.2, "accuracy", "accuracy"), (0.2, "macro_f1", "macro-F1")):
        ax.bar(x + offset, [s[f"{key}_mean"] for s in summaries], 0.4, yerr=[s[f"{key}_std"] for s in summaries],
               capsize=3, label=label)
    ax.set_xticks(x, [a.name for a in report.arms], rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"mean over {len(report.folds)} folds (± std)")
    ax.set_title(report.data)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)


def write_report(report: ClassifyReport, out: Path) -> None:
    atomic_write_text(out / "report.json", json.dumps(report.to_dict(), indent=1) + "\n")
    atomic_write_text(out / "report.md", format_markdown(report))
    plot_report(report, out / "report.png")
