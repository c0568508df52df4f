"""``lmforge bow`` and ``lmforge word2vec``: bag-of-words vectors and word2vec embeddings from the command line."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

WORD_PATTERN = re.compile(r"\w+(?:'\w+)?")
DEFAULT_VECTORS = "vectors.safetensors"

BOW_DESCRIPTION = """\
Fit a bag-of-words vocabulary on a corpus (files, folders, globs; default: the built-in corpus, one document per
topic of Python's reference documentation) and show how texts become sparse vectors. Defaults equal
scikit-learn's CountVectorizer (lower-case, tokens of 2+ word characters).
  lmforge bow --show "the for statement iterates over a sequence"
  lmforge bow --corpus notes/ --tfidf --ngram 1 2 --min-df 2 --show "some text"
"""

W2V_DESCRIPTION = """\
Train word2vec embeddings and query them.
  lmforge word2vec train --corpus book.txt --out vectors.safetensors     (skip-gram; --cbow for CBOW)
  lmforge word2vec similar king --vectors vectors.safetensors
  lmforge word2vec analogy king man woman                                  (king - man + woman)
  lmforge word2vec eval questions-words.txt                                (analogies, or a TSV of scored pairs)
  lmforge word2vec map king queen man woman paris france --out map.png     (2-D PCA map)
Vector files: .safetensors (lmforge), .bin (word2vec binary), anything else (word2vec text).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    bow = subparsers.add_parser("bow", help="bag-of-words vectors of texts (counts or tf-idf), sklearn-compatible",
                                description=BOW_DESCRIPTION, formatter_class=raw)
    bow.add_argument("--corpus", nargs="+", default=None, metavar="PATH",
                     help="files, folders or globs to fit on, one document per file (default: built-in corpus)")
    bow.add_argument("--show", action="append", default=[], metavar="TEXT",
                     help="a text to vectorize and print (repeatable)")
    bow.add_argument("--tfidf", action="store_true", help="tf-idf weights (smooth idf, unit L2 rows)")
    bow.add_argument("--binary", action="store_true", help="1 for present terms instead of counts")
    bow.add_argument("--ngram", nargs=2, type=int, default=(1, 1), metavar=("MIN", "MAX"),
                     help="n-gram lengths to use (1 1)")
    bow.add_argument("--min-df", type=_int_or_fraction, default=1, metavar="N|F",
                     help="drop terms in fewer documents (int) or a smaller fraction of them (float) (1)")
    bow.add_argument("--max-df", type=_int_or_fraction, default=1.0, metavar="N|F",
                     help="drop terms in more documents (int) or a larger fraction (float) (1.0)")
    bow.add_argument("--max-features", type=int, default=None, metavar="N", help="keep the N most frequent terms")
    bow.add_argument("--no-lowercase", action="store_true", help="keep the case of the text")
    bow.add_argument("--top", type=int, default=15, metavar="N", help="terms shown per text, largest first (15)")
    bow.set_defaults(func=run_bow)

    w2v = subparsers.add_parser("word2vec", help="train word2vec embeddings; neighbours, analogies, evaluation, maps",
                                description=W2V_DESCRIPTION, formatter_class=raw)
    sub = w2v.add_subparsers(dest="word2vec_command", metavar="SUBCOMMAND", required=True)

    train = sub.add_parser("train", help="train vectors on text files", formatter_class=raw,
                           description="Train word2vec on text: one sentence per line, words are runs of letters/"
                           "digits (lower-cased unless --no-lowercase). Default corpus: the built-in one.")
    train.add_argument("--corpus", nargs="+", default=None, metavar="PATH", help="files, folders or globs")
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--sg", dest="sg", action="store_const", const=1, default=1, help="skip-gram (default)")
    mode.add_argument("--cbow", dest="sg", action="store_const", const=0, help="CBOW")
    train.add_argument("--out", default=DEFAULT_VECTORS, metavar="PATH",
                       help=f"where to write the vectors; .safetensors, .bin or text ({DEFAULT_VECTORS})")
    train.add_argument("--vector-size", type=int, default=100, metavar="D", help="dimensions (100)")
    train.add_argument("--window", type=int, default=5, metavar="N", help="max distance of context words (5)")
    train.add_argument("--min-count", type=int, default=5, metavar="N", help="ignore rarer words (5)")
    train.add_argument("--negative", type=int, default=5, metavar="K", help="noise words per example (5)")
    train.add_argument("--sample", type=float, default=1e-3, metavar="S",
                       help="subsampling threshold for frequent words; 0 = off (1e-3)")
    train.add_argument("--alpha", type=float, default=0.025, help="initial learning rate (0.025)")
    train.add_argument("--epochs", type=int, default=5, metavar="N", help="passes over the corpus (5)")
    train.add_argument("--workers", type=int, default=2, metavar="N", help="CPU threads (2)")
    train.add_argument("--seed", type=int, default=1, help="random seed (1)")
    train.add_argument("--engine", choices=("auto", "numba", "torch"), default="auto",
                       help="numba (CPU threads) or torch (batched, GPU); auto: torch if CUDA is available")
    train.add_argument("--no-lowercase", action="store_true", help="keep the case of the text")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=run_train)

    similar = sub.add_parser("similar", help="nearest words (cosine) to a word")
    similar.add_argument("word")
    _vectors_option(similar)
    similar.add_argument("--topn", type=int, default=10, metavar="N", help="how many neighbours (10)")
    similar.set_defaults(func=run_similar)

    analogy = sub.add_parser("analogy", help="A - B + C: the word that is to C what A is to B "
                             "(king man woman -> queen)")
    analogy.add_argument("words", nargs=3, metavar="WORD")
    _vectors_option(analogy)
    analogy.add_argument("--topn", type=int, default=5, metavar="N", help="how many answers (5)")
    analogy.set_defaults(func=run_analogy)

    evaluate = sub.add_parser("eval", help="analogy accuracy (questions-words format) or word-pair correlation",
                              description="FILE with ': section' lines is scored as analogies (3CosAdd, gensim's "
                              "procedure); otherwise as word1<TAB>word2<TAB>score pairs (Spearman, Pearson).")
    evaluate.add_argument("file", metavar="FILE")
    _vectors_option(evaluate)
    evaluate.add_argument("--restrict-vocab", type=int, default=300000, metavar="N",
                          help="use only the N most frequent words (300000)")
    evaluate.set_defaults(func=run_eval)

    word_map = sub.add_parser("map", help="2-D map (PCA) of chosen words, written as a PNG")
    word_map.add_argument("words", nargs="+", metavar="WORD")
    _vectors_option(word_map)
    word_map.add_argument("--out", default="word_map.png", metavar="PATH", help="PNG to write (word_map.png)")
    word_map.set_defaults(func=run_map)


def _vectors_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vectors", default=DEFAULT_VECTORS, metavar="PATH",
                        help=f".safetensors, .bin (word2vec binary) or word2vec text ({DEFAULT_VECTORS})")


def _int_or_fraction(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def run_bow(args: argparse.Namespace) -> int:
    import numpy as np

    from lmforge.data.corpus import iter_documents
    from lmforge.represent import BagOfWords

    documents = list(iter_documents(args.corpus))
    bow = BagOfWords(lowercase=not args.no_lowercase, ngram_range=tuple(args.ngram), min_df=args.min_df,
                     max_df=args.max_df, max_features=args.max_features, binary=args.binary, tfidf=args.tfidf)
    matrix = bow.fit_transform(documents)
    print(f"{matrix.shape[0]} documents x {matrix.shape[1]} terms, {matrix.nnz} non-zeros "
          f"({100 * matrix.nnz / max(1, matrix.shape[0] * matrix.shape[1]):.2f}% dense)")
    names = bow.get_feature_names_out()
    for text in args.show:
        row = bow.transform([text])
        order = np.argsort(-row.data, kind="stable")[: args.top]
        print(f"\n{text!r}: {row.nnz} known terms")
        for i in order:
            value = row.data[i]
            shown = f"{value:.4f}" if args.tfidf else str(int(value))
            print(f"  {names[row.indices[i]]:<24} col {row.indices[i]:>6}  {shown}")
    return 0


def _sentences(sources: list[str] | None, lowercase: bool):
    from lmforge.data.corpus import iter_lines

    for line in iter_lines(sources):
        words = WORD_PATTERN.findall(line.lower() if lowercase else line)
        if words:
            yield words


def run_train(args: argparse.Namespace) -> int:
    from lmforge.represent import Word2Vec, save_vectors

    sentences = list(_sentences(args.corpus, not args.no_lowercase))
    model = Word2Vec(sentences, vector_size=args.vector_size, window=args.window, min_count=args.min_count,
                     sg=args.sg, negative=args.negative, sample=args.sample, alpha=args.alpha, epochs=args.epochs,
                     workers=args.workers, seed=args.seed, engine=args.engine, progress=not args.quiet)
    save_vectors(model.wv, args.out)
    losses = ", ".join(f"{x:.4f}" for x in model.loss_history)
    print(f"{len(model.wv)} words x {model.wv.vector_size} dims ({'skip-gram' if args.sg else 'CBOW'}, "
          f"{model.engine_used} engine), {model.words_per_second:,.0f} words/s")
    print(f"loss per epoch: {losses}")
    print(f"wrote {args.out}")
    return 0


def _print_neighbours(pairs) -> None:
    for word, score in pairs:
        print(f"  {word:<24} {score:.4f}")


def run_similar(args: argparse.Namespace) -> int:
    from lmforge.represent import load_vectors

    kv = load_vectors(args.vectors)
    _print_neighbours(kv.most_similar(args.word, topn=args.topn))
    return 0


def run_analogy(args: argparse.Namespace) -> int:
    from lmforge.represent import load_vectors

    a, b, c = args.words
    kv = load_vectors(args.vectors)
    print(f"{a} - {b} + {c} =")
    _print_neighbours(kv.most_similar([a, c], [b], topn=args.topn))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from lmforge.errors import InputError
    from lmforge.represent import load_vectors
    from lmforge.represent.keyed_vectors import section_accuracy

    kv = load_vectors(args.vectors)
    path = Path(args.file)
    if not path.is_file():
        raise InputError(f"{path}: no such evaluation file")
    with open(path, encoding="utf-8", errors="replace") as f:
        is_analogies = any(line.startswith(": ") for line in f)
    if is_analogies:
        accuracy, sections = kv.evaluate_word_analogies(path, restrict_vocab=args.restrict_vocab)
        for section in sections:
            correct, n = len(section["correct"]), len(section["correct"]) + len(section["incorrect"])
            print(f"  {section['section']:<28} {100 * section_accuracy(section):5.1f}%  ({correct}/{n})")
        print(f"analogy accuracy: {100 * accuracy:.2f}%")
    else:
        pearson, spearman, oov = kv.evaluate_word_pairs(path, restrict_vocab=args.restrict_vocab)
        print(f"Spearman {spearman[0]:.4f} (p={spearman[1]:.2g}), Pearson {pearson[0]:.4f} (p={pearson[1]:.2g}), "
              f"pairs with unknown words: {oov:.1f}%")
    return 0


def run_map(args: argparse.Namespace) -> int:
    import matplotlib

    from lmforge.represent import load_vectors

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lmforge.errors import InputError
    from lmforge.fileio import atomic_open

    if len(args.words) < 2:
        raise InputError("map: give at least two words")
    kv = load_vectors(args.vectors)
    vectors = kv[args.words].astype(np.float64)
    centred = vectors - vectors.mean(axis=0)
    # PCA by SVD: the two directions of largest variance, rows projected on them -> (n_words, 2)
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    points = centred @ directions[:2].T
    explained = singular[:2] ** 2 / max((singular**2).sum(), 1e-12)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.scatter(points[:, 0], points[:, 1], s=18)
    for word, (x, y) in zip(args.words, points, strict=True):
        ax.annotate(word, (x, y), xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel(f"PC1 ({100 * explained[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * explained[1]:.0f}% of variance)")
    ax.set_title(f"word2vec map ({Path(args.vectors).name})")
    with atomic_open(args.out, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
