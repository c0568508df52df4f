"""``lmforge compare``: models side by side on the same data and budget (``seq2seq``; see lmforge/compare/)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    compare = subparsers.add_parser("compare", help="compare models side by side on the same data and budget",
                                    description="Compare models side by side. See 'lmforge compare seq2seq --help'.")
    kinds = compare.add_subparsers(dest="compare_kind", metavar="WHAT")
    s2s = kinds.add_parser(
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
    compare.set_defaults(func=lambda args: (compare.print_help(), 0)[1])


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
