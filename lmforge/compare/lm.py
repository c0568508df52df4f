"""Language models of every generation on the same text: unigram counts, Kneser–Ney n-grams, a GRU, GPTs.

    from lmforge.compare.lm import compare_lm, LMSettings
    report = compare_lm(["builtin"], "runs/compare-lm")
    print(format_lm_table(report))

The text is cut into documents (paragraphs: blank-line separated) and split once: the last ``val_fraction`` of
them is held out. A byte-level BPE tokenizer is trained
on the training documents; every model reads the same tokens. The held-out stream is ``<eos> doc <eos> doc …``:
every token after the leading ``<eos>`` is scored, each given the tokens before it (the n-grams see their last
order−1 tokens; the GRU and the GPTs see the tokens before it in their window of ``block_size``). Reported:

- **bits per byte** = Σ −log₂ p(token) ÷ the UTF-8 bytes of the held-out documents — a number that does not
  depend on how finely the tokenizer cuts, so it compares models with different tokenizers too;
- perplexity per token = exp(mean −ln p(token)), and nats per token.

The GRU and the GPTs get the same token budget (``tokens`` = steps × batch × block_size); their validation loss is
logged during training and plotted against the training compute spent (FLOPs ≈ 6 × weights × tokens, plus
attention's 6 × n_layer × block_size × n_embd per token). Each arm's result is saved in ``out_dir/arms/NAME.json``;
a re-run skips finished arms and resumes interrupted training runs from their last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.errors import ConfigError, InputError
from lmforge.fileio import atomic_write_text, read_json

EOS = "<|endoftext|>"
REPORT_VERSION = 1


@dataclass
class LMSettings:
    """Everything besides the text that decides the numbers (part of each arm's resume key)."""

    vocab_size: int = 1024  # the byte-level BPE trained on the training documents
    val_fraction: float = 0.1
    ngram_orders: tuple[int, ...] = (3, 5)
    discount: float = 0.75
    block_size: int = 64
    batch_size: int = 16
    tokens: int = 400_000  # the training budget of every neural model
    lr: float = 2e-3
    gru_width: int = 256
    gru_layers: int = 1
    # GPT sizes: (n_layer, n_embd); heads = n_embd // 32
    gpt_sizes: tuple[tuple[int, int], ...] = ((2, 64), (4, 128), (4, 192))
    evals: int = 8  # validation points per neural run (the loss-vs-FLOPs curve)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction: expected a value in (0, 1), got {self.val_fraction}")
        if self.tokens < self.batch_size * self.block_size:
            raise ConfigError(f"tokens: the budget {self.tokens} is less than one batch ({self.batch_size} x "
                              f"{self.block_size})")
        self.ngram_orders = tuple(int(n) for n in self.ngram_orders)
        self.gpt_sizes = tuple((int(a), int(b)) for a, b in self.gpt_sizes)

    @property
    def steps(self) -> int:
        return max(1, self.tokens // (self.batch_size * self.block_size))


def arm_names(settings: LMSettings) -> list[str]:
    """``["unigram", "kn-3", "kn-5", "gru-256", "gpt-2x64", ...]`` for these settings."""
    return (["unigram"] + [f"kn-{n}" for n in settings.ngram_orders] + [f"gru-{settings.gru_width}"]
            + [f"gpt-{n_layer}x{n_embd}" for n_layer, n_embd in settings.gpt_sizes])


# ------------------------------------------------------------------------------------------------ measures
def bits_per_byte(log_probs: np.ndarray, n_bytes: int) -> float:
    """Σ −log₂ p over the scored tokens ÷ the UTF-8 bytes they spell. ``log_probs`` are natural logs.

    >>> round(bits_per_byte(np.log(np.full(4, 0.5)), 2), 3)  # 4 tokens of one bit each over 2 bytes
    2.0
    """
    if n_bytes <= 0:
        raise InputError("bits per byte: the held-out text is empty")
    return float(-np.sum(log_probs) / math.log(2) / n_bytes)


@dataclass
class HeldOut:
    """The held-out stream (``tokens[0]`` is the leading ``<eos>``, never scored) and its documents' bytes."""

    tokens: np.ndarray
    n_bytes: int


def split_documents(docs: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """The last ``val_fraction`` of the (non-empty) documents is held out; at least one on each side."""
    docs = [d for d in docs if d.strip()]
    if len(docs) < 2:
        raise InputError(f"the corpus holds {len(docs)} document(s); need at least 2 (one to train on, one held "
                         f"out). Separate documents with blank lines or give several files")
    n_val = min(len(docs) - 1, max(1, round(len(docs) * val_fraction)))
    return docs[: len(docs) - n_val], docs[len(docs) - n_val :]


def stream(tokenizer: Any, docs: Sequence[str]) -> np.ndarray:
    """``<eos> doc₁ <eos> doc₂ …`` as one int64 id array."""
    eos = tokenizer.token_to_id(EOS)
    ids = tokenizer.encode_many(list(docs), add_special_tokens=False)
    out = [eos]
    for doc in ids:
        out += [*doc, eos]
    return np.array(out[:-1], dtype=np.int64)


def ngram_log_probs(model: Any, tokens: np.ndarray) -> np.ndarray:
    """Natural-log probability of ``tokens[1:]``, each given what came before (``model.log_probs`` of the stream)."""
    return model.log_probs(tokens)[1:]


def neural_log_probs(model: Any, tokens: np.ndarray, block_size: int, batch_size: int = 16) -> np.ndarray:
    """Natural-log probability of ``tokens[1:]`` from a causal model ``(B, T) → (B, T, V)``: consecutive windows of
    ``block_size`` predictions, each token seeing the tokens before it in its window (and the window's input)."""
    import torch

    x_all = tokens[:-1]
    y_all = tokens[1:]
    starts = list(range(0, len(y_all), block_size))
    out = np.empty(len(y_all), dtype=np.float64)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for b in range(0, len(starts), batch_size):
            chunk = starts[b : b + batch_size]
            for s in chunk:  # one row at a time keeps the ragged last window simple; rows are cheap
                x = torch.from_numpy(np.ascontiguousarray(x_all[s : s + block_size]))[None]  # (1, T)
                y = torch.from_numpy(np.ascontiguousarray(y_all[s : s + block_size]))
                logp = model(x).float().log_softmax(-1)[0]  # (T, V)
                out[s : s + len(y)] = logp.gather(1, y[:, None])[:, 0].double().numpy()
    model.train(was_training)
    return out


def gpt_flops_per_token(model: Any) -> int:
    """Training FLOPs per token of a GPT ≈ 6 × (weights a token multiplies through) + 6 × n_layer × T × n_embd
    (attention scores and mixing over a context of T; Kaplan et al. 2020). Embedding lookups are free; the head's
    V × C multiply counts even when tied."""
    cfg = model.config
    lookups = sum(p.numel() for n, p in model.named_parameters() if n.endswith(("wte.weight", "wpe.weight")))
    matmul = sum(p.numel() for p in model.parameters()) - lookups + cfg.vocab_size * cfg.n_embd
    return 6 * matmul + 6 * cfg.n_layer * cfg.block_size * cfg.n_embd


# ------------------------------------------------------------------------------------------------ arms
@dataclass
class LMArmResult:
    """One model's held-out numbers; for neural models also its size and its (FLOPs, val loss) curve."""

    name: str
    description: str
    bits_per_byte: float
    nats_per_token: float
    perplexity: float
    parameters: int = 0
    train_s: float = 0.0
    train_flops: float = 0.0
    curve: list[list[float]] = field(default_factory=list)  # [[FLOPs, val loss nats/token], ...]


def _scores(name: str, description: str, logp: np.ndarray, held: HeldOut, **extra: Any) -> LMArmResult:
    nats = float(-logp.mean())
    return LMArmResult(name, description, bits_per_byte(logp, held.n_bytes), nats, math.exp(nats), **extra)


def _ngram_arm(name: str, order: int, train: np.ndarray, held: HeldOut, vocab: int, s: LMSettings) -> LMArmResult:
    from lmforge.models.ngram import NgramConfig, NgramLM

    start = time.perf_counter()
    model = NgramLM(NgramConfig(vocab_size=vocab, order=order, discount=s.discount)).fit([train])
    took = time.perf_counter() - start
    what = "add-one unigram counts" if order == 1 else f"interpolated Kneser-Ney {order}-gram (D={s.discount})"
    return _scores(name, what, ngram_log_probs(model, held.tokens), held, train_s=took)


def _neural_arm(name: str, model: Any, flops_per_token: int, description: str, train: np.ndarray,
                held: HeldOut, run_dir: Path, s: LMSettings, progress: bool) -> LMArmResult:
    from lmforge.data.tokens import TokenData
    from lmforge.train.lm import NextTokenTask
    from lmforge.train.loop import TrainConfig
    from lmforge.train.loop import train as train_loop

    steps = s.steps
    every = max(1, steps // s.evals)
    config = TrainConfig(steps=steps, batch_size=s.batch_size, lr=s.lr, warmup_steps=max(1, steps // 20),
                         weight_decay=0.1, eval_every=every, eval_batches=16, checkpoint_every=every,
                         keep_checkpoints=1, log_every=every, seed=s.seed)
    data = TokenData(run_dir, train, held.tokens, {})
    task = NextTokenTask(data, s.block_size, seed=s.seed, max_eval_windows=config.eval_batches * s.batch_size)
    start = time.perf_counter()
    train_loop(model, task, config, run_dir, resume=True, model_config={"arm": name, **model.config.to_dict()},
               progress=progress)
    took = time.perf_counter() - start
    tokens_per_step = s.batch_size * s.block_size
    curve = []
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "val_loss" in row:
            curve.append([float(row["step"] * tokens_per_step * flops_per_token), float(row["val_loss"])])
    logp = neural_log_probs(model, held.tokens, s.block_size)
    n_params = sum(p.numel() for p in model.parameters())
    return _scores(name, description, logp, held, parameters=n_params, train_s=took,
                   train_flops=float(steps * tokens_per_step * flops_per_token), curve=curve)


def _build_neural(name: str, vocab: int, s: LMSettings) -> tuple[Any, int, str]:
    import torch

    torch.manual_seed(s.seed)
    if name.startswith("gru-"):
        from lmforge.models.rnn_lm import GRULM, GRULMConfig

        model = GRULM(GRULMConfig(vocab_size=vocab, block_size=s.block_size, n_layer=s.gru_layers,
                                  n_embd=s.gru_width))
        return model, model.flops_per_token(), f"GRU, {s.gru_layers} x {s.gru_width}"
    from lmforge.models.gpt import GPT, GPTConfig

    n_layer, n_embd = (int(v) for v in name[len("gpt-"):].split("x"))
    model = GPT(GPTConfig(vocab_size=vocab, block_size=s.block_size, n_layer=n_layer, n_head=max(1, n_embd // 32),
                          n_embd=n_embd, dropout=0.0))
    return model, gpt_flops_per_token(model), f"GPT, {n_layer} layers x {n_embd}"


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class LMReport:
    """The result of :func:`compare_lm` (also ``out_dir/report.json``)."""

    corpus: str
    train_bytes: int
    held_out_bytes: int
    train_tokens: int
    held_out_tokens: int
    vocab_size: int
    settings: dict
    arms: list[LMArmResult]
    out_dir: str

    def arm(self, name: str) -> LMArmResult:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"version": REPORT_VERSION, **{k: v for k, v in asdict(self).items() if k != "arms"},
                "arms": [asdict(a) for a in self.arms]}


def _log(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def compare_lm(
    sources: Sequence[str | os.PathLike] | None,
    out_dir: str | os.PathLike,
    *,
    settings: LMSettings | None = None,
    arms: Sequence[str] | None = None,
    progress: bool = True,
) -> LMReport:
    """Train and score every arm on ``sources`` (files / folders / globs; None or ``["builtin"]``: the built-in
    corpus); write ``report.json``, ``report.md`` and ``loss_vs_flops.png`` to ``out_dir``."""
    from lmforge.data.corpus import iter_documents
    from lmforge.tokenizers import load_tokenizer, train_tokenizer

    settings = settings or LMSettings()
    names = arm_names(settings)
    if arms is not None:
        unknown = [a for a in arms if a not in names]
        if unknown:
            raise ConfigError(f"arms {unknown}: expected names from {names}")
        names = [a for a in names if a in arms]
    sources = [os.fspath(s) for s in (sources or ["builtin"])]
    docs = [para.strip() for doc in iter_documents(sources) for para in re.split(r"\n\s*\n", doc) if para.strip()]
    train_docs, val_docs = split_documents(docs, settings.val_fraction)
    out = Path(out_dir)
    (out / "arms").mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256(json.dumps([docs, asdict(settings)], ensure_ascii=False).encode())
    key = h.hexdigest()
    tok_path = out / "tokenizer.json"
    meta_path = out / "tokenizer.key"
    if tok_path.is_file() and meta_path.is_file() and meta_path.read_text().strip() == key:
        tokenizer = load_tokenizer(tok_path)
    else:
        _log(progress, f"training a byte-level BPE tokenizer ({settings.vocab_size} tokens) on the training text")
        tokenizer = train_tokenizer(train_docs, kind="bpe", vocab_size=settings.vocab_size, special_tokens=[EOS],
                                    show_progress=False)
        tokenizer.save(tok_path)
        atomic_write_text(meta_path, key + "\n")
    vocab = int(tokenizer.vocab_size)
    train = stream(tokenizer, train_docs)
    held = HeldOut(stream(tokenizer, val_docs), sum(len(d.encode("utf-8")) for d in val_docs))
    results = []
    for i, name in enumerate(names, 1):
        path = out / "arms" / f"{name}.json"
        if path.is_file():
            saved = read_json(path)
            if saved.get("key") == key:
                _log(progress, f"[{i}/{len(names)}] {name}: done earlier")
                results.append(LMArmResult(**saved["result"]))
                continue
        _log(progress, f"[{i}/{len(names)}] {name} ...")
        if name == "unigram":
            result = _ngram_arm(name, 1, train, held, vocab, settings)
        elif name.startswith("kn-"):
            result = _ngram_arm(name, int(name[3:]), train, held, vocab, settings)
        else:
            model, fpt, what = _build_neural(name, vocab, settings)
            run_dir = out / "runs" / name
            if (run_dir / "key").is_file() and (run_dir / "key").read_text().strip() != key:
                raise ConfigError(f"{run_dir}: holds a run of other text or settings; remove it or use another "
                                  f"--out folder")
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "key", key + "\n")
            result = _neural_arm(name, model, fpt, what, train, held, run_dir, settings, progress)
        atomic_write_text(path, json.dumps({"key": key, "result": asdict(result)}, indent=1) + "\n")
        _log(progress, f"[{i}/{len(names)}] {name}: {result.bits_per_byte:.3f} bits/byte, perplexity "
                       f"{result.perplexity:.1f}")
        results.append(result)
    report = LMReport(", ".join(sources), sum(len(d.encode("utf-8")) for d in train_docs), held.n_bytes,
                      len(train), len(held.tokens) - 1, vocab, asdict(settings), results, str(out))
    atomic_write_text(out / "report.json", json.dumps(report.to_dict(), indent=1) + "\n")
    atomic_write_text(out / "report.md", format_lm_markdown(report))
    plot_loss_vs_flops(report, out / "loss_vs_flops.png")
    return report


# ------------------------------------------------------------------------------------------------ the report
LM_HEADER = ["model", "bits/byte", "perplexity", "nats/token", "parameters", "train FLOPs", "train s"]


def _lm_rows(report: LMReport) -> list[list[str]]:
    return [[a.name, f"{a.bits_per_byte:.3f}", f"{a.perplexity:.1f}", f"{a.nats_per_token:.3f}",
             f"{a.parameters:,}" if a.parameters else "-", f"{a.train_flops:.2e}" if a.train_flops else "-",
             f"{a.train_s:.1f}"] for a in report.arms]


def format_lm_table(report: LMReport) -> str:
    """The terminal table, one row per model."""
    rows = [LM_HEADER, *_lm_rows(report)]
    widths = [max(len(r[c]) for r in rows) for c in range(len(LM_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_lm_markdown(report: LMReport) -> str:
    s = report.settings
    lines = [f"# compare lm: {report.corpus}", "",
             f"Trained on {report.train_bytes:,} bytes ({report.train_tokens:,} tokens of a {report.vocab_size}-token "
             f"byte-level BPE), scored on {report.held_out_bytes:,} held-out bytes ({report.held_out_tokens:,} "
             f"tokens). Neural models: {s['tokens']:,} training tokens each, windows of {s['block_size']}.", "",
             "| " + " | ".join(LM_HEADER) + " |", "|" + "---|" * len(LM_HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _lm_rows(report)]
    return "\n".join(lines) + "\n"


def plot_loss_vs_flops(report: LMReport, png_path: str | os.PathLike) -> None:
    """Validation loss (nats/token) against training FLOPs for the neural models; count models as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for a in report.arms:
        if a.curve:
            xs, ys = zip(*a.curve, strict=True)
            ax.plot(xs, ys, "o-", label=a.name, markersize=3)
    for a, style in zip([a for a in report.arms if not a.curve], ["--", ":", "-.", (0, (1, 3))] * 4, strict=False):
        ax.axhline(a.nats_per_token, color="gray", linestyle=style, label=f"{a.name} (held-out)")
    ax.set_xscale("log")
    ax.set_xlabel("training compute (FLOPs)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(f"compare lm: {report.corpus}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)
