"""``lmforge demo``: the whole pipeline in a few minutes on a laptop CPU, on text that ships with Python.

tokenizer (BPE) → token files → pre-training a tiny GPT (live progress) → generation → the LM head's
next-token probabilities; everything is written under ``./runs/demo/`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

DEFAULT_PROMPT = "The for statement"
PROBE_PROMPT = "The return statement"


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="train a tiny GPT from scratch on the built-in corpus and generate (3-5 min on 2 CPU cores)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a byte-level BPE tokenizer on CPython's documentation, tokenize it, pre-train the "
        "'tiny' GPT with a live progress bar, generate a continuation, and show the LM head's top next-token "
        "probabilities. Everything goes under --out, which is a model folder afterwards: "
        "lmforge.load(OUT) or 'lmforge generate --model OUT'.",
    )
    demo.add_argument("--out", default="runs/demo", help="where to write tokenizer, data, checkpoints, metrics")
    demo.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    demo.add_argument("--preset", default="tiny", help="training preset (see 'lmforge train gpt --help')")
    demo.add_argument("--vocab-size", type=int, default=2048, help="BPE vocabulary size")
    demo.add_argument("--prompt", default=DEFAULT_PROMPT, help="prompt to continue")
    demo.add_argument("--max-new-tokens", type=int, default=60, help="tokens to generate")
    demo.add_argument("--threads", type=int, default=None,
                      help="torch CPU threads (default: the cores not already busy, at least 1)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar or log lines")
    demo.set_defaults(func=run_demo)


def idle_cores() -> int:
    """Cores not already busy (1-minute load average), at least 1: on a shared machine, a thread per busy core
    only adds contention — two-thread kernels on one free core run several times slower than one thread."""
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        busy = 0.0
    return max(1, min(cores, round(cores - busy)))


def _pieces(tokenizer, ids: list[int]) -> str:
    """How a text was cut: ``'The| for| statement'``."""
    return "|".join(tokenizer.token_bytes(i).decode("utf-8", errors="replace") for i in ids)


def run_demo(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import lmforge
    from lmforge.data.corpus import builtin_documents
    from lmforge.data.tokens import prepare_tokens
    from lmforge.models.gpt import GPT
    from lmforge.tokenizers import train_tokenizer
    from lmforge.train.evaluate import unigram_entropy
    from lmforge.train.presets import resolve_preset
    from lmforge.train.pretrain import build_gpt_config, train_gpt

    threads = args.threads or idle_cores()
    torch.set_num_threads(threads)
    out = Path(args.out)
    started = time.perf_counter()
    print("lmforge demo: a GPT trained from scratch on CPython's reference documentation (ships with Python)\n")

    # 1. Tokenizer: byte-level BPE learnt from the corpus itself.
    t0 = time.perf_counter()
    docs = builtin_documents()
    tokenizer = train_tokenizer(docs, kind="bpe", vocab_size=args.vocab_size, special_tokens=["<|endoftext|>"],
                                show_progress=False)
    sentence = "The for statement is used to iterate over the elements of a sequence."
    ids = tokenizer.encode(sentence)
    print(f"[1/5] tokenizer: byte-level BPE, {tokenizer.vocab_size:,} tokens, learnt from "
          f"{sum(len(d) for d in docs) / 1e3:,.0f} K characters in {time.perf_counter() - t0:.1f} s")
    print(f"      {sentence!r}\n      -> {len(ids)} tokens: {_pieces(tokenizer, ids)}")
    print(f"      ids {ids}\n")

    # 2. Token files.
    t0 = time.perf_counter()
    data = prepare_tokens(None, tokenizer, out / "data")
    baseline = unigram_entropy(data.train, data.val, data.vocab_size)
    print(f"[2/5] data: {len(data.train):,} training + {len(data.val):,} validation tokens "
          f"({data.manifest['dtype']}) in {out / 'data'} ({time.perf_counter() - t0:.1f} s)")
    print(f"      baseline: a model that ignores context (unigram) scores {baseline:.3f} nats/token on validation\n")

    # 3. Training. A fresh demo run each time: old checkpoints would otherwise be resumed by a later --resume.
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    train_overrides = {"steps": args.steps} if args.steps else {}
    model_fields, train_config = resolve_preset(args.preset, None, train_overrides)
    if args.steps:  # short demos: keep evaluating and checkpointing at a sensible cadence
        train_config.eval_every = max(1, min(train_config.eval_every, args.steps // 2))
        train_config.checkpoint_every = max(1, min(train_config.checkpoint_every, args.steps // 2))
        train_config.warmup_steps = min(train_config.warmup_steps, max(1, args.steps // 10))
    config = build_gpt_config(data, model_fields)
    n_params = sum(p.numel() for p in GPT(config).parameters())
    print(f"[3/5] training the {args.preset!r} GPT: {config.n_layer} layers x {config.n_embd} wide, "
          f"{config.n_head} heads, context {config.block_size}, {n_params / 1e6:.2f}M parameters; "
          f"{train_config.steps} steps of {train_config.batch_size} x {config.block_size} tokens on {threads} "
          f"thread{'s' if threads > 1 else ''}")
    t0 = time.perf_counter()
    result = train_gpt(config, data, out, train_config, tokenizer, progress=not args.no_progress)
    train_seconds = time.perf_counter() - t0
    first = result.losses[0] if result.losses else float("nan")
    print(f"      {result.step} steps in {train_seconds:.0f} s: training loss {first:.3f} -> "
          f"{result.losses[-1]:.3f}; validation loss {result.val_loss:.3f} "
          f"(perplexity {float(np.exp(result.val_loss)):.1f}) vs unigram baseline {baseline:.3f}\n")
    if result.interrupted:
        print(f"interrupted: the latest model is saved in {out}")
        return 130

    # 4. Generation from the saved run folder, exactly as a user reloads it.
    lm = lmforge.load(out)
    text = lm.generate(args.prompt, max_new_tokens=args.max_new_tokens, temperature=0.8, top_k=40, seed=0)
    print(f"[4/5] generation (temperature 0.8, top-k 40, seed 0) from lmforge.load({str(out)!r}):")
    print(f"      {args.prompt}\033[1m{text}\033[0m\n" if _color() else f"      {args.prompt}[{text}]\n")

    # 5. What the LM head says about the very next token.
    probe = tokenizer.encode(PROBE_PROMPT)
    with torch.inference_mode():
        logits = lm.model(torch.tensor([probe]))[0, -1]  # (V,) scores for the token after the prompt
    probs = torch.softmax(logits.float(), dim=-1)
    top = torch.topk(probs, 8)
    print(f"[5/5] next-token probabilities after {PROBE_PROMPT!r} (softmax of the LM head's logits):")
    for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        piece = tokenizer.token_bytes(i).decode("utf-8", errors="replace")
        print(f"      {p:7.2%}  {piece!r:<16} {'#' * max(1, round(p * 50))}")

    print(f"\nwritten under {out}/ in {time.perf_counter() - started:.0f} s:")
    for name, what in [("tokenizer.json", "the BPE tokenizer (Hugging Face format)"),
                       ("lmforge.json", "model config"), ("model.safetensors", "the trained weights"),
                       ("data/", "train.bin, val.bin, manifest.json"),
                       ("checkpoints/", f"step-{result.step}/ (model, optimizer, RNG, sampler: resumable)"),
                       ("metrics.jsonl", "loss, learning rate, tokens/s per step; validation loss"),
                       ("loss.png", "the loss curve")]:
        print(f"  {str(out / name):<32} {what}")
    print("\nreuse it:")
    print(f"  lmforge generate --model {out} --prompt 'The while statement'")
    print(f"  lmforge eval --model {out} --data {out / 'data'}")
    print(f"  python -c \"import lmforge; print(lmforge.load('{out}').generate('The while statement'))\"")
    return 0


def _color() -> bool:
    import sys

    return sys.stdout.isatty()
