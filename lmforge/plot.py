"""Pictures of a model's insides (matplotlib, Agg: no display needed): attention heat maps and a grid of all heads,
next-token probability bars, the logit lens, 2-D embedding maps; and for translation, source × target alignment
and BLEU by sentence length.

Every function takes plain data (what :mod:`lmforge.probe` returns), returns a ``matplotlib.figure.Figure`` whose
image *is* that data (``fig.axes[0].images[0].get_array()`` for heat maps), and :func:`save_figure` writes it as a
PNG atomically. The CLI (``lmforge inspect --out``, ``lmforge translate --show-attention``, ``lmforge compare
seq2seq``) and the docs images use them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files, not windows: works on servers and in CI

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lmforge.fileio import atomic_write_with  # noqa: E402

ATTENTION_CMAP = "Blues"
LENS_CMAP = "viridis"


def _label(token: str, width: int = 12) -> str:
    """A token as an axis label: whitespace made visible, long pieces cut.

    >>> _label(" the\\n")
    '␣the↵'
    """
    text = token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")
    return text if len(text) <= width else text[: width - 1] + "…"


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float32)


def attention_heatmap(weights, tokens: Sequence[str], title: str = "", *, ax=None) -> Figure:
    """One head's weights ``(T, S)`` as a heat map: row = the query token, column = the key token it reads."""
    w = _numpy(weights)
    standalone = ax is None
    fig = ax.figure if ax is not None else Figure(figsize=(1.2 + 0.32 * len(tokens), 0.9 + 0.3 * len(tokens)))
    ax = ax if ax is not None else fig.add_subplot()
    image = ax.imshow(w, cmap=ATTENTION_CMAP, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    labels = [_label(t) for t in tokens]
    ax.set_xticks(range(w.shape[1]), labels[-w.shape[1]:], rotation=90, fontsize=7)
    ax.set_yticks(range(w.shape[0]), labels[-w.shape[0]:], fontsize=7)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title, fontsize=9)
    if standalone:
        fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def attention_grid(attentions: Sequence, title: str = "") -> Figure:
    """All heads at once: ``attentions[layer]`` ``(H, T, T)`` → a grid, one row per layer, one column per head;
    each tile is that head's heat map (no labels: an overview for spotting patterns)."""
    n_layer, n_head = len(attentions), _numpy(attentions[0]).shape[0]
    fig = Figure(figsize=(1.1 * n_head + 0.6, 1.1 * n_layer + 0.6))
    axes = fig.subplots(n_layer, n_head, squeeze=False)
    for layer in range(n_layer):
        w = _numpy(attentions[layer])
        for head in range(n_head):
            ax = axes[layer][head]
            ax.imshow(w[head], cmap=ATTENTION_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if layer == 0:
                ax.set_title(f"h{head}", fontsize=7)
            if head == 0:
                ax.set_ylabel(f"L{layer}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def probability_bars(candidates: Sequence[dict], title: str = "next-token probabilities") -> Figure:
    """Horizontal bars of ``[{"token", "prob"}, ...]`` (most probable on top)."""
    probs = [c["prob"] for c in candidates]
    labels = [_label(c["token"], 20) for c in candidates]
    fig = Figure(figsize=(5.0, 0.6 + 0.28 * len(candidates)))
    ax = fig.add_subplot()
    bars = ax.barh(range(len(probs)), probs, color="#4a7ab5")
    ax.set_yticks(range(len(probs)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1e-9, max(probs, default=0)) * 1.18)
    ax.bar_label(bars, [f"{p:.1%}" for p in probs], fontsize=7, padding=2)
    ax.set_xlabel("probability")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def logit_lens_heatmap(lens: dict, tokens: Sequence[str], title: str = "logit lens") -> Figure:
    """The logit lens (``lmforge.probe.logit_lens``) as a heat map: rows = layers (0 = embeddings, bottom row = the
    model's output), columns = positions; colour = probability of the top token, written in each cell."""
    probs = np.array([[cell[0] for cell in layer] for layer in lens["probs"]], dtype=np.float32)  # (L+1, P)
    words = [[cell[0] for cell in layer] for layer in lens["tokens"]]
    n_rows, n_cols = probs.shape
    fig = Figure(figsize=(1.6 + 0.85 * n_cols, 0.8 + 0.24 * n_rows))
    ax = fig.add_subplot()
    ax.imshow(probs, cmap=LENS_CMAP, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    for r in range(n_rows):
        for c in range(n_cols):
            ax.text(c, r, _label(words[r][c], 9), ha="center", va="center", fontsize=6,
                    color="black" if probs[r, c] > 0.6 else "white")
    ax.set_xticks(range(n_cols), [_label(tokens[p]) for p in lens["positions"]], rotation=90, fontsize=7)
    ax.set_yticks(range(n_rows), ["emb"] + [f"L{i}" for i in range(n_rows - 1)], fontsize=6)
    ax.set_xlabel("input position (the prediction is for the token after it)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def pca_2d(vectors) -> np.ndarray:
    """Project ``(N, D)`` vectors on their two main directions of variance → ``(N, 2)``.

    >>> pca_2d(np.array([[0.0, 0, 0], [2, 0, 0], [4, 0, 0]]))[:, 0].round(3).tolist()
    [-2.0, 0.0, 2.0]
    """
    x = _numpy(vectors).astype(np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:2] * np.sign(vt[:2].sum(axis=1, keepdims=True) + 1e-12)  # a deterministic sign per direction
    out = x @ vt.T
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def embedding_map(vectors, labels: Sequence[str], title: str = "embedding map (PCA)") -> Figure:
    """Vectors ``(N, D)`` (words, sentences) as labelled points on their first two principal components."""
    xy = pca_2d(vectors)
    fig = Figure(figsize=(6.0, 4.5))
    ax = fig.add_subplot()
    ax.scatter(xy[:, 0], xy[:, 1], s=14, color="#4a7ab5")
    for (x, y), label in zip(xy, labels, strict=True):
        ax.annotate(_label(label, 30), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def alignment_heatmap(weights, source_tokens: Sequence[str], target_tokens: Sequence[str], title: str = "") -> Figure:
    """An encoder–decoder's attention ``(T, S)`` as a heat map: row = the produced target token, column = the source
    token it read (RNN attention weights, or one layer/head of cross-attention)."""
    w = _numpy(weights)
    t, s = w.shape
    fig = Figure(figsize=(max(4.0, 0.45 * s + 2), max(3.0, 0.4 * t + 1.5)))
    ax = fig.add_subplot()
    image = ax.imshow(w, cmap=ATTENTION_CMAP, vmin=0.0, vmax=max(float(w.max()), 1e-9), aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(s), [_label(x) for x in source_tokens], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(t), [_label(x) for x in target_tokens], fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def bleu_by_length(rows: dict[str, dict[str, float]], title: str = "") -> Figure:
    """BLEU per source-length bucket, one line per model: ``rows = {model: {bucket: bleu}}``."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name, by_bucket in rows.items():
        buckets = list(by_bucket)
        ax.plot(range(len(buckets)), [by_bucket[b] for b in buckets], marker="o", label=name)
        ax.set_xticks(range(len(buckets)), buckets)
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("BLEU")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG at ``path`` (temp file + rename); returns the path."""
    path = Path(path)
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    return path
