"""``lmforge data prepare``: text → token folder (train.bin, val.bin, manifest.json, tokenizer.json)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="prepare training data (tokenize a corpus into token files)",
                                 description="Training data. See 'lmforge data prepare --help'.")
    actions = data.add_subparsers(dest="data_action", metavar="ACTION")
    prep = actions.add_parser(
        "prepare", help="tokenize text files (or the built-in corpus) into a token folder",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Tokenize text files, folders or globs (or 'builtin', the default: CPython's documentation) on "
        "all cores into OUT/train.bin and OUT/val.bin (uint16 when the vocabulary fits, else uint32), with "
        "OUT/manifest.json (counts, the tokenizer's hash, every source's sha256) and OUT/tokenizer.json. "
        "Unchanged input reuses the files.",
        epilog="examples: lmforge data prepare --vocab-size 2048 --out data/builtin\n"
        "          lmforge data prepare my_texts/ --tokenizer tok.json --out data/mine",
    )
    prep.add_argument("sources", nargs="*", default=["builtin"], help="files, folders, globs, or 'builtin'")
    prep.add_argument("--out", required=True, help="token folder to write")
    who = prep.add_mutually_exclusive_group()
    who.add_argument("--tokenizer", help="tokenizer to use (tokenizer.json, lmforge or GPT-2 files, a model folder)")
    who.add_argument("--vocab-size", type=int, default=None,
                     help="no tokenizer given: train a byte-level BPE of this size on the sources first")
    prep.add_argument("--val-fraction", type=float, default=0.1, help="share of tokens (at the end) for validation")
    prep.add_argument("--workers", type=int, default=None, help="tokenizer processes (default: all cores)")
    prep.add_argument("--force", action="store_true", help="re-tokenize even when the folder is up to date")
    prep.set_defaults(func=run_prepare)
    data.set_defaults(func=lambda args: (data.print_help(), 0)[1])


def run_prepare(args: argparse.Namespace) -> int:
    from lmforge.data.corpus import BUILTIN, iter_documents
    from lmforge.data.tokens import prepare_tokens
    from lmforge.errors import ConfigError
    from lmforge.tokenizers import load_tokenizer, train_tokenizer

    if args.tokenizer:
        tokenizer = load_tokenizer(args.tokenizer)
    elif args.vocab_size:
        sources = [] if args.sources == [BUILTIN] else args.sources
        tokenizer = train_tokenizer(list(iter_documents(sources)), kind="bpe", vocab_size=args.vocab_size,
                                    special_tokens=["<|endoftext|>"])
    else:
        raise ConfigError("give --tokenizer PATH, or --vocab-size N to train a BPE tokenizer on the sources")
    data = prepare_tokens(args.sources, tokenizer, args.out, val_fraction=args.val_fraction,
                          num_workers=args.workers, force=args.force)
    m = data.manifest
    print(f"{data.folder}: {m['train_tokens']:,} training + {m['val_tokens']:,} validation tokens "
          f"({m['dtype']}, vocab {m['vocab_size']:,}) from {len(m['sources'])} source(s)")
    return 0
