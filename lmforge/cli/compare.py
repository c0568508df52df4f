"""``lmforge compare``: every representation on one classification task; every kind of language model on one text;
the three translation architectures on one parallel corpus.

A thin shell: one function per subcommand, each calling one library function (``lmforge.compare.*``).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    cmp = subparsers.add_parser(
        "compare", help="measure representations / language models side by side",
        description="Side-by-side measurements on the same data: 'classify' cross-validates bag-of-words, word2vec, "
        "a small MLM-pre-trained BERT and a real pre-trained encoder; 'lm' scores unigram, n-gram, GRU and GPT "
        "language models in bits per byte; 'seq2seq' trains the no-attention RNN, the attention RNN and the "
        "Transformer on one parallel corpus.",
    )
    sub = cmp.add_subparsers(dest="compare_command", metavar="SUBCOMMAND")
    add_classify(sub)
    add_lm(sub)
    add_seq2seq(sub)
    cmp.set_defaults(func=lambda args: cmp.print_help() or 2)


def add_classify(sub: argparse._SubParsersAction) -> None:
    from lmforge.compare.classify import ARMS, ClassifySettings

    defaults = ClassifySettings()
    p = sub.add_parser(
        "classify", help="cross-validated accuracy / macro-F1 of every text representation",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Cross-validates each arm on the same StratifiedGroupKFold folds (groups = normalised text) and "
        "writes report.json, report.md and report.png to --out. Finished arms and folds in --out are reused.",
        epilog="example: lmforge compare classify --data builtin:negation --out runs/cmp --folds 3 "
        "--arms counts-1 tfidf-1-2 word2vec",
    )
    p.add_argument("--data", default="builtin:negation",
                   help="CSV / TSV / JSONL / fastText file, or builtin:negation | builtin:presence (synthetic)")
    p.add_argument("--n", type=int, default=400, help="examples of a builtin: task")
    p.add_argument("--text-col", default="text", help="text column of a CSV / TSV / JSONL file")
    p.add_argument("--label-col", default="label", help="label column of a CSV / TSV / JSONL file")
    p.add_argument("--encoding", default="utf-8", help="the data file's text encoding")
    p.add_argument("--encoder", default=None, help="a pre-trained BERT-family folder (e.g. all-MiniLM-L6-v2)")
    p.add_argument("--pretrain-corpus", default=None,
                   help="text file word2vec and the small BERT are pre-trained on (default: the training folds)")
    p.add_argument("--arms", nargs="+", default=None, choices=ARMS, metavar="ARM",
                   help=f"which arms (default: all that apply): {', '.join(ARMS)}")
    p.add_argument("--out", default="runs/compare-classify", help="report folder (also holds finished arms)")
    p.add_argument("--folds", type=int, default=defaults.folds)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--mlm-steps", type=int, default=defaults.mlm_steps, help="small BERT: MLM pre-training steps")
    p.add_argument("--bert-epochs", type=float, default=defaults.bert_epochs, help="small BERT: fine-tuning epochs")
    p.add_argument("--bert-lr", type=float, default=defaults.bert_lr, help="small BERT: fine-tuning learning rate")
    p.add_argument("--encoder-epochs", type=float, default=defaults.encoder_epochs,
                   help="pre-trained encoder: fine-tuning epochs")
    p.add_argument("--encoder-lr", type=float, default=defaults.encoder_lr,
                   help="pre-trained encoder: fine-tuning learning rate")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run_classify)


def run_classify(args: argparse.Namespace) -> int:
    from lmforge.compare.classify import (
        BUILTIN_TASKS,
        ClassifySettings,
        compare_classify,
        format_table,
        read_labelled,
    )
    from lmforge.errors import ConfigError

    if args.data.startswith("builtin:"):
        task = args.data[len("builtin:"):]
        if task not in BUILTIN_TASKS:
            names = ", ".join(f"builtin:{t}" for t in BUILTIN_TASKS)
            raise ConfigError(f"--data {args.data}: the built-in tasks are {names}")
        data = BUILTIN_TASKS[task](args.n, args.seed)
    else:
        data = read_labelled(args.data, args.text_col, args.label_col, args.encoding)
    settings = ClassifySettings(folds=args.folds, seed=args.seed, mlm_steps=args.mlm_steps,
                                bert_epochs=args.bert_epochs, bert_lr=args.bert_lr, encoder_epochs=args.encoder_epochs,
                                encoder_lr=args.encoder_lr)
    report = compare_classify(data, args.out, arms=args.arms, settings=settings, encoder=args.encoder,
                              pretrain_corpus=args.pretrain_corpus, progress=not args.quiet)
    print(format_table(report))
    print(f"report: {args.out}/report.md, report.json, report.png")
    return 0


def add_lm(sub: argparse._SubParsersAction) -> None:
    from lmforge.compare.lm import LMSettings

    defaults = LMSettings()
    p = sub.add_parser(
        "lm", help="bits per byte of unigram, n-gram, GRU and GPT language models on held-out text",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Holds out the last documents of the corpus, trains a byte-level BPE and every model on the "
        "rest (the GRU and the GPTs with the same token budget) and scores the held-out text. Writes report.json, "
        "report.md and loss_vs_flops.png to --out; finished arms are reused, interrupted training resumes.",
        epilog="example: lmforge compare lm --out runs/cmp-lm --tokens 20000 --gpt-sizes 2x64",
    )
    p.add_argument("--corpus", nargs="+", default=["builtin"], help="text files / folders / globs, or builtin")
    p.add_argument("--out", default="runs/compare-lm", help="report folder (also holds finished arms and runs)")
    p.add_argument("--vocab-size", type=int, default=defaults.vocab_size, help="byte-level BPE vocabulary")
    p.add_argument("--val-fraction", type=float, default=defaults.val_fraction, help="share of documents held out")
    p.add_argument("--orders", type=int, nargs="+", default=list(defaults.ngram_orders), help="n-gram orders")
    p.add_argument("--tokens", type=int, default=defaults.tokens, help="training tokens of every neural model")
    p.add_argument("--block-size", type=int, default=defaults.block_size)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--gru-width", type=int, default=defaults.gru_width)
    p.add_argument("--gpt-sizes", nargs="+", default=[f"{a}x{b}" for a, b in defaults.gpt_sizes],
                   help="GPT shapes as LAYERSxWIDTH")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--arms", nargs="+", default=None, metavar="ARM",
                   help="only these models, e.g. unigram kn-3 gru-256 gpt-4x128 (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run_lm)


def run_lm(args: argparse.Namespace) -> int:
    from lmforge.compare.lm import LMSettings, compare_lm, format_lm_table
    from lmforge.errors import ConfigError

    sizes = []
    for text in args.gpt_sizes:
        layers, _, width = text.partition("x")
        if not (layers.isdigit() and width.isdigit()) or int(layers) < 1 or int(width) < 32 or int(width) % 32:
            raise ConfigError(f"--gpt-sizes {text}: expected LAYERSxWIDTH with a width that is a multiple of 32, "
                              f"e.g. 4x128")
        sizes.append((int(layers), int(width)))
    settings = LMSettings(vocab_size=args.vocab_size, val_fraction=args.val_fraction, ngram_orders=tuple(args.orders),
                          block_size=args.block_size, batch_size=args.batch_size, tokens=args.tokens, lr=args.lr,
                          gru_width=args.gru_width, gpt_sizes=tuple(sizes), seed=args.seed)
    report = compare_lm(args.corpus, args.out, settings=settings, arms=args.arms, progress=not args.quiet)
    print(format_lm_table(report))
    print(f"report: {args.out}/report.md, report.json, loss_vs_flops.png")
    return 0


def add_seq2seq(sub: argparse._SubParsersAction) -> None:
    s2s = sub.add_parser(
        "seq2seq", help="no-attention RNN vs attention RNN vs Transformer on one translation data set",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train the no-attention RNN, the attention RNN and the Transformer on the same parallel text with "
        "the same budget; write OUT/report.md (BLEU and chrF overall and by source length, parameters, training time, "
        "translation speed), OUT/results.json and OUT/bleu_by_length.png.",
        epilog="example: lmforge compare seq2seq --data synthetic --out runs/cmp --steps 2000",
    )
    s2s.add_argument("--data", required=True, nargs="+", help="'ding', 'synthetic', a TSV file, folder or two files")
    s2s.add_argument("--out", required=True, help="folder for the report and the three run folders")
    s2s.add_argument("--steps", type=int, default=2000, help="optimizer steps per model")
    s2s.add_argument("--batch-size", type=int, default=64, help="sentence pairs per step")
    s2s.add_argument("--vocab-size", type=int, default=None,
                     help="shared BPE vocabulary (default 8000; synthetic 1024)")
    s2s.add_argument("--block-size", type=int, default=128, help="longest source / target in tokens")
    s2s.add_argument("--max-test", type=int, default=1000, help="score at most this many test pairs")
    s2s.add_argument("--seed", type=int, default=1337)
    s2s.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    s2s.add_argument("--no-progress", action="store_true")
    s2s.set_defaults(func=run_compare_seq2seq)


def run_compare_seq2seq(args: argparse.Namespace) -> int:
    import torch

    from lmforge.compare.seq2seq import compare_seq2seq, report_table

    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data[0] if len(args.data) == 1 else args.data
    results = compare_seq2seq(data, args.out, steps=args.steps, batch_size=args.batch_size,
                              vocab_size=args.vocab_size, max_test=args.max_test, block_size=args.block_size,
                              seed=args.seed, progress=not args.no_progress)
    print(report_table(results))
    print(f"report: {args.out}/report.md, plot: {args.out}/bleu_by_length.png")
    return 0
