"""``lmforge translate`` and ``lmforge train seq2seq`` (registered by :mod:`lmforge.cli.train`); BLEU/chrF for
``lmforge eval`` on an encoder–decoder (:func:`run_eval_seq2seq`)."""

from __future__ import annotations

import argparse
import os
import sys

# Model-shape options of both encoder–decoders (config fields); None = the architecture's default.
SEQ2SEQ_MODEL_OPTIONS: list[tuple[str, type, str]] = [
    ("block_size", int, "longest source / target in tokens"),
    ("n_layer", int, "decoder blocks (Transformer) / GRU layers (RNN)"),
    ("n_encoder_layer", int, "encoder blocks (Transformer; default n_layer)"),
    ("n_head", int, "attention heads (Transformer)"),
    ("n_embd", int, "model / embedding width"),
    ("ffn_hidden", int, "feed-forward width (Transformer)"),
    ("rnn_hidden", int, "GRU state width per direction (RNN)"),
    ("dropout", float, "dropout probability"),
    ("label_smoothing", float, "label smoothing of the training loss"),
    ("prenorm", bool, "pre-norm blocks instead of the paper's post-norm (Transformer)"),
    ("share_embeddings", bool, "one embedding table for source and target"),
    ("tie_embeddings", bool, "output layer shares the target embedding"),
    ("bidirectional", bool, "bidirectional GRU encoder (RNN)"),
]


def register_train_seq2seq(kinds: argparse._SubParsersAction) -> None:
    from lmforge.cli.options import TRAIN_OPTIONS, add_options

    p = kinds.add_parser(
        "seq2seq", help="train an encoder-decoder (RNN or Transformer) on parallel text",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a translation model: a GRU encoder-decoder without attention (the pre-attention model), "
        "with additive (Bahdanau) or dot (Luong) attention, or the Transformer of 'Attention Is All You Need'. The run "
        "folder is a loadable model folder (lmforge translate --model OUT) with checkpoints/, metrics.jsonl and "
        "loss.png; --resume continues it; torchrun works as for 'train gpt'.",
        epilog="example: lmforge train seq2seq --arch rnn --attention additive --data synthetic --out runs/rnn "
        "--steps 2000",
    )
    p.add_argument("--arch", default="transformer", choices=["rnn", "transformer"])
    p.add_argument("--attention", default=None, choices=["none", "additive", "dot"],
                   help="RNN attention (default additive)")
    p.add_argument("--data", required=True, nargs="+",
                   help="'ding' (German-English, Debian trans-de-en), 'synthetic', a TSV file (source<TAB>target), "
                   "a folder, or two aligned files (source, target)")
    p.add_argument("--out", required=True, help="run folder (created; with --resume: continued)")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="BPE vocabulary trained on the training pairs (default 8000; 1024 for synthetic)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or log lines")
    add_options(p.add_argument_group("model shape"), SEQ2SEQ_MODEL_OPTIONS)
    add_options(p.add_argument_group("training"), TRAIN_OPTIONS)
    p.set_defaults(func=run_train_seq2seq)


def run_train_seq2seq(args: argparse.Namespace) -> int:
    import torch

    from lmforge.cli.options import TRAIN_OPTIONS
    from lmforge.errors import ConfigError
    from lmforge.train.seq2seq import train_seq2seq

    if args.threads:
        torch.set_num_threads(args.threads)
    model = {n: getattr(args, n) for n, _, _ in SEQ2SEQ_MODEL_OPTIONS if getattr(args, n, None) is not None}
    rnn_only, transformer_only = {"rnn_hidden", "bidirectional"}, {"n_head", "ffn_hidden", "n_encoder_layer",
                                                                   "prenorm"}
    wrong = sorted(set(model) & (transformer_only if args.arch == "rnn" else rnn_only))
    if wrong:
        raise ConfigError(f"--arch {args.arch} has no option(s) {', '.join('--' + w.replace('_', '-') for w in wrong)}")
    if args.attention is not None:
        if args.arch != "rnn":
            raise ConfigError("--attention is an RNN switch (the Transformer always attends)")
        model["attention"] = args.attention
    train = {n: getattr(args, n) for n, _, _ in TRAIN_OPTIONS if getattr(args, n, None) is not None}
    data = args.data[0] if len(args.data) == 1 else args.data
    result = train_seq2seq(data, args.out, args.arch, model, train, vocab_size=args.vocab_size, resume=args.resume,
                           progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        if result.resumed_from is not None:
            print(f"resumed from the step-{result.resumed_from} checkpoint")
        val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
        print(f"{'interrupted at' if result.interrupted else 'finished at'} step {result.step}{val}")
        print(f"run folder: {result.run_dir}  (lmforge translate --model {result.run_dir} '...')")
    return 130 if result.interrupted else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    t = subparsers.add_parser(
        "translate", help="translate sentences with an encoder-decoder (RNN, Transformer, Marian folder)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Translate the sentences given as arguments, else the lines of --file, else the lines of stdin; "
        "one translation per line, in order, batched.",
        epilog="example: lmforge translate --model runs/ding \"Ich habe keine Zeit.\"",
    )
    t.add_argument("text", nargs="*", help="sentences to translate")
    t.add_argument("--model", required=True, help="run folder, lmforge model folder or Marian folder")
    t.add_argument("--file", default=None, help="translate each line of this file")
    t.add_argument("--batch-size", type=int, default=32, help="sentences per batch")
    t.add_argument("--beams", type=int, default=1, help="beam search width (1: greedy)")
    t.add_argument("--max-new-tokens", type=int, default=None, help="default: the model's block_size")
    t.add_argument("--show-attention", default=None, metavar="PNG",
                   help="write the source x target attention heat map of the first sentence")
    t.add_argument("--layer", type=int, default=-1, help="Transformer cross-attention layer for --show-attention")
    t.add_argument("--head", type=int, default=None, help="Transformer head for --show-attention (default: mean)")
    t.set_defaults(func=run_translate)


def run_translate(args: argparse.Namespace) -> int:
    import lmforge
    from lmforge.errors import ConfigError, InputError
    from lmforge.train.seq2seq import translate_ids

    if args.batch_size < 1 or args.beams < 1:
        raise ConfigError("--batch-size and --beams must be >= 1")
    if args.text:
        sources = list(args.text)
    elif args.file:
        try:
            with open(args.file, encoding="utf-8") as f:
                sources = [line.rstrip("\n") for line in f]
        except FileNotFoundError:
            raise InputError(f"{args.file}: file not found") from None
    else:
        sources = [line.rstrip("\n") for line in sys.stdin]
    lm = lmforge.load(args.model)
    if not getattr(lm.model, "is_encoder_decoder", False):
        raise ConfigError(f"{args.model}: {type(lm.model).__name__} is not an encoder-decoder (use lmforge generate)")
    if lm.tokenizer is None:
        raise InputError(f"{args.model}: the model has no tokenizer.json, so it cannot translate text")
    for n, s in enumerate(sources, 1):
        if not s.strip():
            raise InputError(f"{args.file or 'input'}:{n}: empty line (nothing to translate)")
    texts = translate_ids(lm.model, lm.tokenizer, sources, batch_size=args.batch_size, num_beams=args.beams,
                          max_new_tokens=args.max_new_tokens)
    for text in texts:
        print(text)
    if args.show_attention and sources:
        from lmforge.plot import alignment_heatmap, save_figure
        from lmforge.train.seq2seq import cross_attention

        weights, src, tgt, _ = cross_attention(lm.model, lm.tokenizer, sources[0], layer=args.layer, head=args.head)
        what = "attention" if hasattr(lm.model.config, "attention") else (
            f"cross-attention layer {args.layer}, {'mean of heads' if args.head is None else f'head {args.head}'}")
        save_figure(alignment_heatmap(weights, src, tgt, title=what), args.show_attention)
        print(f"attention heat map: {args.show_attention}", file=sys.stderr)
    return 0


def run_eval_seq2seq(args: argparse.Namespace, lm) -> int:
    """BLEU and chrF (sacrebleu) of an encoder–decoder on parallel data: a TSV file / folder / two aligned files,
    or ``ding`` / ``synthetic`` (their held-out test split, as the run was split)."""
    from lmforge.data.parallel import read_parallel, split_pairs
    from lmforge.train.seq2seq import bleu_chrf, translate_ids

    data = args.data[0] if len(args.data) == 1 else args.data
    pairs = read_parallel(data)
    where = ", ".join(args.data)
    if data in ("ding", "synthetic"):
        from lmforge.fileio import read_json

        info_path = (lm.path / "seq2seq.json") if lm.path is not None else None
        info = read_json(info_path) if info_path is not None and info_path.exists() else {}
        pairs = split_pairs(pairs, info.get("valid_fraction", 0.05), info.get("test_fraction", 0.05))["test"]
        where = f"{data} (test split)"
    pairs = pairs[: args.max_windows] if args.max_windows else pairs
    hyps = translate_ids(lm.model, lm.tokenizer, [p.source for p in pairs], batch_size=args.batch_size)
    bleu, chrf = bleu_chrf(hyps, [p.target for p in pairs])
    print(f"{where}: BLEU {bleu:.2f}, chrF {chrf:.2f} ({len(pairs)} sentence pairs, greedy)")
    return 0
