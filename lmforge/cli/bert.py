"""BERT commands: ``lmforge embed``, ``search``, ``fill-mask``, ``finetune classify|tag|pair``, ``predict``
(``lmforge train bert`` lives with the other ``train`` commands in :mod:`lmforge.cli.train`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmforge.errors import InputError

FT_EXAMPLES = {
    "classify": "lmforge finetune classify --model MODEL --train train.csv --eval test.csv --out runs/clf",
    "tag": "lmforge finetune tag --model MODEL --train train.jsonl --eval test.jsonl --out runs/ner",
    "pair": "lmforge finetune pair --model MODEL --train pairs.tsv --eval dev.tsv --out runs/para",
}


def _texts(args: argparse.Namespace) -> list[str]:
    """Texts from the command line and/or ``--input FILE`` (one per non-empty line)."""
    texts = list(args.texts or [])
    if getattr(args, "input", None):
        from lmforge.data.corpus import read_text_file

        texts += [line for line in read_text_file(args.input).splitlines() if line.strip()]
    if not texts:
        raise InputError("no text given: pass TEXT arguments or --input FILE")
    return texts


def _threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="BERT folder: Hugging Face / sentence-transformers / lmforge")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser(
        "embed", help="sentence embeddings of texts (BERT / sentence-transformers models)", formatter_class=fmt,
        description="Embed sentences as the model's sentence-transformers config says (pooling, normalisation, "
        "max_seq_length). Prints a short view of each vector and, for several texts, their cosine similarities; "
        "--out saves all vectors as a .npy array (N, D) in input order.",
        epilog='example: lmforge embed --model MODEL "A man is eating food." "Someone eats a meal."')
    _add_common(p)
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed")
    p.add_argument("--input", help="file with one text per line")
    p.add_argument("--out", help="write the embeddings to this .npy file")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    p.set_defaults(func=run_embed)

    p = subparsers.add_parser(
        "search", help="the corpus lines most similar to a query (semantic search)", formatter_class=fmt,
        description="Embed every line of --corpus and each query, and print the top-k lines by cosine similarity "
        "(the retrieval step of RAG). --cache keeps the corpus embeddings in a .npy file for the next search.",
        epilog='example: lmforge search --model MODEL --corpus faq.txt "how do I reset my password?"')
    _add_common(p)
    p.add_argument("texts", nargs="+", metavar="QUERY", help="queries")
    p.add_argument("--corpus", required=True, help="text file: one document per non-empty line")
    p.add_argument("-k", "--top-k", type=int, default=5, help="results per query")
    p.add_argument("--cache", help=".npy file for the corpus embeddings (written if missing; reused for the same "
                   "corpus and model)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    p.set_defaults(func=run_search)

    p = subparsers.add_parser(
        "fill-mask", help="predict the [MASK] tokens of a sentence (masked-LM models)", formatter_class=fmt,
        description="Show the most likely tokens for each mask token in the text (a model with a masked-LM head, "
        "e.g. one from 'lmforge train bert' or an HF BertForMaskedLM folder).",
        epilog='example: lmforge fill-mask --model runs/bert "The capital of France is [MASK]."')
    _add_common(p)
    p.add_argument("texts", nargs="+", metavar="TEXT", help="text(s) containing the mask token, e.g. [MASK]")
    p.add_argument("-k", "--top-k", type=int, default=5, help="predictions per mask")
    p.set_defaults(func=run_fill_mask)

    ft = subparsers.add_parser("finetune", help="fine-tune a BERT: classify | tag | pair",
                               description="Fine-tune a pre-trained BERT on labelled data and save it (an HF folder; "
                               "an lmforge folder for a classifier on mean pooling).")
    kinds = ft.add_subparsers(dest="finetune_kind", metavar="TASK")
    helps = {"classify": "one label per text (CSV/TSV/JSONL columns, or fastText '__label__x text' lines)",
             "tag": "one label per word, BIO tags (JSONL lists or space-separated CSV/TSV columns)",
             "pair": "one label per text pair, e.g. paraphrase / entailment (CSV/TSV/JSONL)"}
    for kind, help_text in helps.items():
        k = kinds.add_parser(kind, help=help_text, formatter_class=fmt, epilog="example: " + FT_EXAMPLES[kind],
                             description=f"Fine-tune for {kind}: {help_text}. Reports accuracy and F1"
                             f"{' (per entity)' if kind == 'tag' else ''} on --eval; the model, metrics.json and "
                             "loss.png go to --out; use it with 'lmforge predict --model OUT'.")
        _add_common(k)
        k.add_argument("--train", required=True, help="training data file")
        k.add_argument("--eval", help="evaluation data file (same format)")
        k.add_argument("--out", required=True, help="output folder for the fine-tuned model")
        k.add_argument("--epochs", type=float, default=3.0, help="passes over the training data")
        k.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (warm-up 10%%, cosine to 0)")
        k.add_argument("--batch-size", type=int, default=16, help="examples per step")
        k.add_argument("--max-length", type=int, default=128, help="tokens per input (longer inputs are cut)")
        k.add_argument("--seed", type=int, default=0, help="random seed")
        k.add_argument("--encoding", default="utf-8", help="encoding of the data files")
        if kind == "tag":
            k.add_argument("--tokens-column", default="tokens", help="column with the words")
            k.add_argument("--tags-column", default="tags", help="column with one tag per word")
        else:
            k.add_argument("--text-column", default="text", help="column with the text")
            k.add_argument("--label-column", default="label", help="column with the label")
            if kind == "pair":
                k.add_argument("--pair-column", default="text_pair", help="column with the second text")
            k.add_argument("--pooling", choices=("cls", "mean"), default=None,
                           help="the classifier's input: 'cls' (BERT's pooled [CLS]; saved as an HF "
                           "BertForSequenceClassification folder) or 'mean' (mean of the token states; saved as "
                           "an lmforge folder). Default: 'mean' for a mean-pooling sentence-transformers model "
                           "(e.g. all-MiniLM-L6-v2), else 'cls'")
        k.add_argument("--no-progress", action="store_true", help="no progress bar or log lines")
        k.set_defaults(func=run_finetune)
    ft.set_defaults(func=lambda args: (ft.print_help(), 0)[1])

    p = subparsers.add_parser(
        "predict", help="labels from a fine-tuned BERT (classification or tagging)", formatter_class=fmt,
        description="Print the predicted label and its probability for each text (classification), or each "
        "word with its tag (tagging). --pair gives the second text of a sentence-pair model.",
        epilog='example: lmforge predict --model runs/clf "what a wonderful film"')
    _add_common(p)
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to label")
    p.add_argument("--input", help="file with one text per line")
    p.add_argument("--pair", action="append", help="second text for a pair model (once per TEXT)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.set_defaults(func=run_predict)


# ------------------------------------------------------------------------------------------------ handlers
def run_embed(args: argparse.Namespace) -> int:
    import numpy as np

    import lmforge
    from lmforge.embed import cosine_similarity, save_npy

    _threads(args)
    texts = _texts(args)
    lm = lmforge.load(args.model)
    vectors = lm.embed(texts, batch_size=args.batch_size)
    if args.out:
        out = Path(args.out)
        save_npy(out, vectors)
        print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {out}")
        return 0
    for text, v in zip(texts, vectors, strict=True):
        head = ", ".join(f"{x:+.4f}" for x in v[:6])
        print(f"[{head}, ...] dim {len(v)}, norm {np.linalg.norm(v):.4f}  {text[:60]!r}")
    if len(texts) > 1:
        sims = cosine_similarity(vectors, vectors)
        print("cosine similarity:")
        for i, row in enumerate(sims):
            print(f"  {i:>3}: " + " ".join(f"{x:6.3f}" for x in row))
    return 0


def run_search(args: argparse.Namespace) -> int:
    import lmforge
    from lmforge.data.corpus import read_text_file
    from lmforge.embed import cached_corpus_embeddings, corpus_fingerprint, search

    _threads(args)
    numbered = [(n, line) for n, line in enumerate(read_text_file(args.corpus).splitlines(), 1) if line.strip()]
    corpus = [line for _, line in numbered]
    if not corpus:
        raise InputError(f"{args.corpus}: no non-empty lines to search")
    lm = lmforge.load(args.model)
    had_cache = bool(args.cache) and Path(args.cache).is_file()
    vectors, reused = cached_corpus_embeddings(lambda texts: lm.embed(texts, batch_size=args.batch_size), corpus,
                                               args.cache, corpus_fingerprint(corpus, args.model))
    if had_cache and not reused:
        print(f"{args.cache}: made for another corpus or model: re-embedding", file=sys.stderr)
    results = search(lm.model, lm.tokenizer, args.texts, corpus, k=args.top_k, batch_size=args.batch_size,
                     config=lm.sentence_config, corpus_embeddings=vectors)
    for query, hits in zip(args.texts, results, strict=True):
        print(f"query: {query}")
        for rank, hit in enumerate(hits, 1):
            print(f"  {rank}. {hit.score:.4f}  [line {numbered[hit.index][0]}] {hit.text}")
    return 0


def run_fill_mask(args: argparse.Namespace) -> int:
    import lmforge

    _threads(args)
    lm = lmforge.load(args.model)
    for text in args.texts:
        predictions = lm.fill_mask(text, args.top_k)
        mask_text = lm.tokenizer.id_to_token(lm.tokenizer.mask_token_id)
        print(text)
        for n, candidates in enumerate(predictions, 1):
            print(f"  {mask_text} #{n}: " + ", ".join(f"{c.token} {c.probability:.3f}" for c in candidates))
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from lmforge.train.finetune import finetune

    _threads(args)
    kind = args.finetune_kind
    if kind == "tag":
        columns = {"tokens": args.tokens_column, "tags": args.tags_column}
    else:
        columns = {"text": args.text_column, "label": args.label_column}
        if kind == "pair":
            columns["text_pair"] = args.pair_column
    result = finetune(args.model, args.train, kind, args.out, eval_path=args.eval, columns=columns,
                      epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                      seed=args.seed, progress=not args.no_progress, encoding=args.encoding,
                      pooling=getattr(args, "pooling", None))
    print(f"labels: {', '.join(result.labels)}")
    if result.pooling:
        print(f"classifier input: {result.pooling} pooling")
    print(f"final training loss {result.losses[-1]:.4f}")
    if result.metrics:
        print("eval: " + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
    print(f"model: {result.out_dir}  (lmforge predict --model {result.out_dir} \"some text\")")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import json

    from lmforge.train.finetune import predict

    _threads(args)
    texts = _texts(args)
    if args.pair is not None and len(args.pair) != len(texts):
        raise InputError(f"--pair: give one per text ({len(texts)} texts, {len(args.pair)} --pair)")
    for text, p in zip(texts, predict(args.model, texts, args.pair), strict=True):
        if args.json:
            print(json.dumps({"text": text, "label": p.label, "score": p.score, "tags": p.tags}, ensure_ascii=False))
        elif p.tags is not None:
            print(" ".join(f"{w}/{t}" for w, t in p.tags))
        else:
            print(f"{p.label}\t{p.score:.4f}\t{text}")
    return 0
