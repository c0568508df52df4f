"""``lmforge eval``: perplexity of a language model on a token folder or text files."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    ev = subparsers.add_parser(
        "eval", help="perplexity of a GPT on held-out text",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Mean next-token loss (nats/token) and perplexity of a causal language model on non-overlapping "
        "windows of a token folder's split, or of text files tokenized with the model's own tokenizer.",
        epilog="example: lmforge eval --model runs/demo --data runs/demo/data",
    )
    ev.add_argument("--model", required=True, help="model folder or file lmforge.load opens (a run folder works)")
    ev.add_argument("--data", required=True, nargs="+", help="a token folder, or text files / folders / globs; for an "
                    "encoder-decoder: parallel text (TSV, folder, two aligned files, ding, synthetic) → BLEU/chrF")
    ev.add_argument("--split", default="val", choices=["val", "train"], help="which split of a token folder")
    ev.add_argument("--block-size", type=int, default=None, help="window length (default: the model's context)")
    ev.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    ev.add_argument("--max-windows", type=int, default=512,
                    help="evaluate at most this many windows (encoder-decoder: sentence pairs)")
    ev.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np

    import lmforge
    from lmforge.data.corpus import iter_documents
    from lmforge.data.tokens import MANIFEST, open_tokens
    from lmforge.errors import InputError
    from lmforge.train.evaluate import perplexity

    lm = lmforge.load(args.model)
    if getattr(lm.model, "is_encoder_decoder", False):  # translation: BLEU / chrF on parallel text
        from lmforge.cli.seq2seq import run_eval_seq2seq

        return run_eval_seq2seq(args, lm)
    if len(args.data) == 1 and (Path(args.data[0]) / MANIFEST).exists():
        data = open_tokens(args.data[0])
        if lm.tokenizer is not None:
            data.check_tokenizer(lm.tokenizer, source=f"{args.model}'s tokenizer")
        tokens = data.val if args.split == "val" else data.train
        where = f"{data.folder} ({args.split})"
    else:
        if lm.tokenizer is None:
            raise InputError(f"{args.model}: the model has no tokenizer to encode text files with")
        ids = lm.tokenizer.encode_many(list(iter_documents(args.data)), add_special_tokens=False)
        eos = getattr(lm.tokenizer, "eos_token_id", None)
        tokens = np.array([t for doc in ids for t in ([*doc, eos] if eos is not None else doc)], dtype=np.int64)
        where = ", ".join(args.data)
    result = perplexity(lm.model, tokens, block_size=args.block_size, batch_size=args.batch_size,
                        max_windows=args.max_windows)
    print(f"{where}: loss {result.loss:.4f} nats/token, perplexity {result.perplexity:.2f} "
          f"({result.tokens:,} tokens in {result.windows} windows)")
    return 0
