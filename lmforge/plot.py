"""Pictures: matplotlib figures written as PNG files (Agg backend: no display needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def attention_heatmap(weights: Any, source_tokens: list[str], target_tokens: list[str], path: str | os.PathLike,
                      title: str = "") -> Path:
    """Write a source × target heat map of attention ``weights (T, S)`` (rows: produced target tokens, columns:
    source tokens) to ``path`` (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lmforge.fileio import atomic_write_with

    w = np.asarray(weights, dtype=float)
    t, s = w.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * s + 2), max(3.0, 0.4 * t + 1.5)))
    image = ax.imshow(w, cmap="Blues", vmin=0.0, vmax=max(float(w.max()), 1e-9), aspect="auto")
    ax.set_xticks(range(s), source_tokens, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(t), target_tokens, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = Path(path)
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def bleu_by_length_plot(rows: dict[str, dict[str, float]], path: str | os.PathLike, title: str = "") -> Path:
    """Line plot of BLEU per source-length bucket, one line per model: ``rows = {model: {bucket: bleu}}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lmforge.fileio import atomic_write_with

    fig, ax = plt.subplots(figsize=(6, 4))
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
    path = Path(path)
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path
