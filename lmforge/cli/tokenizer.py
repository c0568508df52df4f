"""``lmforge tokenizer train|encode|show|explain``: train a tokenizer and look at how it cuts text."""

from __future__ import annotations

import argparse
import sys
import time

DEFAULT_DIR = "tokenizer"
_PATTERNS = ("gpt2", "cl100k")
# Alternating background colours for token spans (ANSI 256-colour palette, readable with dark or light text).
_COLOURS = (153, 223, 194, 217, 189, 230)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tokenizer", help="train a BPE/WordPiece tokenizer; encode, show and explain text",
        description="Subword tokenizers: byte-level BPE (GPT-2/GPT-4 style) and WordPiece (BERT).",
    )
    sub = p.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])

    t = sub.add_parser("train", help="train a tokenizer on the built-in corpus or your text files",
                       description="Train a tokenizer. With no SOURCES it trains on the built-in corpus (CPython's "
                       "reference documentation). SOURCES are text files, folders or globs.")
    t.add_argument("sources", nargs="*", metavar="SOURCES", help="text files, folders or globs (default: built-in)")
    t.add_argument("--kind", choices=("bpe", "wordpiece"), default="bpe", help="algorithm (default: bpe)")
    t.add_argument("--vocab-size", type=int, default=4096,
                   help="ids in total, counting the 256 byte tokens and the special tokens (default: 4096)")
    t.add_argument("--min-frequency", type=int, default=2, help="stop when the best pair is rarer (default: 2)")
    t.add_argument("--special-tokens", nargs="*", default=None, metavar="TOKEN",
                   help="special tokens (default: <|endoftext|> for bpe, [PAD] [UNK] [CLS] [SEP] [MASK] for "
                   "wordpiece)")
    t.add_argument("--pattern", default="gpt2", help="BPE pre-tokenizer: gpt2, cl100k or a regex (default: gpt2)")
    t.add_argument("--out", default=DEFAULT_DIR, help=f"output file or folder (default: ./{DEFAULT_DIR})")
    t.add_argument("--format", choices=("lmforge", "hf", "gpt2", "bert"), default="lmforge",
                   help="file format to write (default: lmforge)")
    t.set_defaults(func=_train)

    e = sub.add_parser("encode", help="encode text, files or the built-in corpus to ids",
                       description="Encode to token ids. Given TEXT, print its ids. Given --files (or nothing), "
                       "encode those documents (or the built-in corpus) and print a summary; --out writes the ids, "
                       "one JSON list per document.")
    e.add_argument("text", nargs="*", help="text(s) to encode; each prints one line of ids")
    _tokenizer_arg(e)
    e.add_argument("--files", nargs="*", metavar="SOURCES", default=None, help="text files, folders or globs")
    e.add_argument("--out", default=None, help="write ids as JSON lines (one per document) to this file")
    e.add_argument("--no-special", action="store_true", help="do not add the post-processor's special tokens")
    e.set_defaults(func=_encode)

    s = sub.add_parser("show", help="show how a text is cut: tokens with their ids (coloured on a terminal)",
                       description="Show the tokens of TEXT with their ids; coloured spans on a terminal.")
    s.add_argument("text", nargs="+", help="the text (several words are joined by spaces)")
    _tokenizer_arg(s)
    s.add_argument("--no-color", action="store_true", help="plain output even on a terminal")
    s.set_defaults(func=_show)

    x = sub.add_parser("explain", help="show, per word, the merges (BPE) or matching steps (WordPiece)",
                       description="Explain how each word of TEXT was split: the merges applied in order.")
    x.add_argument("text", nargs="+", help="the text (several words are joined by spaces)")
    _tokenizer_arg(x)
    x.set_defaults(func=_explain)


def _tokenizer_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", "-t", default=DEFAULT_DIR,
                   help="tokenizer file or folder: lmforge JSON, tokenizer.json, vocab.json+merges.txt, vocab.txt, "
                   f".tiktoken (default: ./{DEFAULT_DIR}, written by 'lmforge tokenizer train')")


def _load(path: str):
    from pathlib import Path

    from lmforge.errors import InputError
    from lmforge.tokenizers import load_tokenizer

    if path == DEFAULT_DIR and not Path(path).exists():
        raise InputError(f"{path}: no tokenizer here; train one first with 'lmforge tokenizer train' or pass "
                         "--tokenizer PATH")
    return load_tokenizer(path)


def _train(args) -> int:
    from lmforge.tokenizers import CL100K_PATTERN, GPT2_PATTERN, train_tokenizer

    pattern = {"gpt2": GPT2_PATTERN, "cl100k": CL100K_PATTERN}.get(args.pattern, args.pattern)
    if args.pattern not in _PATTERNS:
        import regex

        from lmforge.errors import ConfigError

        try:
            regex.compile(pattern)
        except regex.error as err:
            raise ConfigError(f"--pattern: not a valid regex ({err})") from None
    specials = args.special_tokens
    if specials is None:
        specials = ["<|endoftext|>"] if args.kind == "bpe" else []
    t0 = time.perf_counter()
    tok = train_tokenizer(files=args.sources or None, kind=args.kind, vocab_size=args.vocab_size,
                          min_frequency=args.min_frequency, special_tokens=specials, pattern=pattern)
    seconds = time.perf_counter() - t0
    tok.save(args.out, format=args.format)
    corpus = "the built-in corpus" if not args.sources else ", ".join(args.sources)
    print(f"trained {tok.kind} tokenizer on {corpus}: vocab_size {tok.vocab_size} in {seconds:.1f} s")
    print(f"saved ({args.format}) to {args.out}")
    return 0


def _encode(args) -> int:
    import json

    tok = _load(args.tokenizer)
    add = not args.no_special
    if args.text and args.files is None:
        for text in args.text:
            print(" ".join(map(str, tok.encode(text, add_special_tokens=add))))
        return 0
    from lmforge.data.corpus import iter_documents

    docs = list(iter_documents(args.files or None))
    t0 = time.perf_counter()
    ids = tok.encode_many(docs, add_special_tokens=add)
    seconds = time.perf_counter() - t0
    n_chars = sum(len(d) for d in docs)
    n_bytes = sum(len(d.encode("utf-8", errors="surrogatepass")) for d in docs)
    n_tokens = sum(len(x) for x in ids)
    print(f"{len(docs)} documents, {n_chars:,} chars, {n_tokens:,} tokens "
          f"({n_chars / max(1, n_tokens):.2f} chars/token) in {seconds:.2f} s "
          f"({n_bytes / 1e6 / max(seconds, 1e-9):.1f} MB/s)")
    if args.out:
        from lmforge.fileio import atomic_open

        with atomic_open(args.out) as f:
            for row in ids:
                f.write(json.dumps(row) + "\n")
        print(f"ids written to {args.out}")
    return 0


def _visible(token_text: str) -> str:
    """Make whitespace visible: ``" a\\n"`` → ``"·a↵"``."""
    return token_text.replace(" ", "·").replace("\n", "↵").replace("\t", "→")


def _show(args) -> int:
    tok = _load(args.tokenizer)
    text = " ".join(args.text)
    enc = tok.encode_batch([text], add_special_tokens=False, return_offsets=True)
    ids, offsets = enc["input_ids"][0], enc["offsets"][0]
    colour = sys.stdout.isatty() and not args.no_color
    pieces = []
    for i in range(len(offsets)):
        raw = tok.token_bytes(ids[i]).decode("utf-8", errors="backslashreplace")
        pieces.append(_visible(raw) if tok.kind == "bpe" else tok.id_to_token(ids[i]))
    if colour:
        spans, last_end = [], 0
        for k, (s, e) in enumerate(offsets):
            if s < last_end:  # tokens inside one character share it: colour it once
                continue
            spans.append(f"\x1b[48;5;{_COLOURS[k % len(_COLOURS)]}m\x1b[30m{text[s:e]}\x1b[0m")
            last_end = e
        print("".join(spans))
        print(" ".join(f"\x1b[48;5;{_COLOURS[k % len(_COLOURS)]}m\x1b[30m{p}\x1b[0m" for k, p in enumerate(pieces)))
    else:
        print("|".join(pieces))
    print(" ".join(f"{i}:{p}" for i, p in zip(ids, pieces, strict=True)))
    print(f"{len(ids)} tokens, {len(text)} chars")
    return 0


def _readable(tok, token: str) -> str:
    r"""A BPE token's text (its bytes, undecodable ones as ``\xNN``) with visible spaces; WordPiece tokens as is."""
    if tok.kind != "bpe" or token in tok.special_tokens:
        return token
    i = tok.token_to_id(token)
    return _visible(tok.token_bytes(i).decode("utf-8", errors="backslashreplace")) if i is not None else token


def _explain(args) -> int:
    tok = _load(args.tokenizer)
    text = " ".join(args.text)
    for rec in tok.explain(text):
        word = _visible(rec["word"])
        pieces = " ".join(_readable(tok, p) for p in rec["pieces"])
        print(f"{word!r} [{rec['start']}:{rec['end']}] → {pieces}  ids {rec['ids']}")
        if rec.get("special"):
            print("    special token, matched whole")
        for k, (a, b, c) in enumerate(rec["merges"], 1):
            print(f"    {k:2d}. {_readable(tok, a)} + {_readable(tok, b)} → {_readable(tok, c)}")
        steps = rec.get("steps")
        for step in steps.get("steps", []) if isinstance(steps, dict) else []:
            tried = ", ".join(step.get("tried", []))
            print(f"    at char {step.get('start')}: tried {tried} → {step.get('matched') or '[UNK]'}")
    return 0
