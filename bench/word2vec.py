"""word2vec and bag-of-words speed and quality: lmforge (numba and torch engines) vs gensim / scikit-learn.

Text: Webster's 1913 dictionary (Debian ``dict-gcide``: /usr/share/dictd/gcide.dict.dz, 40 MB decompressed),
with dictd headers, pronunciation markup (``\\Ab*do"men\\``) and source tags (``[1913 Webster]``) stripped,
lower-cased, one sentence per dictionary paragraph. Same sentences, same hyper-parameters (skip-gram, dim 100,
window 5, negative 5, min_count 5, sample 1e-3, same epochs, same workers) for every trainer, in one run.
Speed: corpus words x epochs / wall time of the whole ``Word2Vec(sentences, ...)`` call (vocabulary included).
Quality: accuracy on gensim's questions-words.txt (restrict_vocab=30000, as word2vec.c's compute-accuracy),
computed by gensim's own evaluator for every model.

    python3 bench/word2vec.py                       # full run (several minutes)
    python3 bench/word2vec.py --max-mb 5 --epochs 1 # quick look
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
import time
from pathlib import Path

GCIDE = Path("/usr/share/dictd/gcide.dict.dz")
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def gcide_paragraphs(max_mb: float | None) -> list[str]:
    """Dictionary paragraphs as plain text (markup and source tags stripped)."""
    if not GCIDE.exists():
        raise SystemExit(f"{GCIDE} is missing: apt-get install -y dict-gcide")
    raw = gzip.open(GCIDE).read().decode("utf-8", "replace")
    text = re.sub(r"\\[^\\\n]*\\", " ", raw)  # pronunciations: \Ab*do"men\
    text = re.sub(r"\[(?:1913 Webster|WordNet[^\]]*|PJC|Webster 1913 Suppl\.|Century Dict\.)\]", " ", text)
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if not p.lstrip().startswith("00-database")]
    if max_mb:
        budget, out = max_mb * 1e6, []
        for p in paragraphs:
            budget -= len(p)
            if budget < 0:
                break
            out.append(p)
        paragraphs = out
    return paragraphs


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="intra-op threads of the torch engine on CPU (default: --workers)")
    parser.add_argument("--max-mb", type=float, default=None, help="use only the first N MB of the dictionary")
    parser.add_argument("--skip", nargs="*", default=[], choices=["gensim", "numba", "torch", "bow"])
    parser.add_argument("--repeat", type=int, default=2,
                        help="train gensim and the numba engine this many times, alternating, and keep each one's "
                        "best speed (the machine may be shared: alternating exposes both to the same load)")
    args = parser.parse_args()

    import gensim
    from gensim.models import Word2Vec as GensimWord2Vec
    from sklearn.feature_extraction.text import CountVectorizer

    from lmforge.represent import BagOfWords, KeyedVectors, Word2Vec

    os.environ.setdefault("OMP_NUM_THREADS", str(args.workers))
    paragraphs = gcide_paragraphs(args.max_mb)
    sentences = [s for s in (WORD.findall(p.lower()) for p in paragraphs) if len(s) > 2]
    n_words = sum(map(len, sentences))
    print(f"corpus: GCIDE, {sum(map(len, paragraphs)) / 1e6:.1f} MB of text, {len(sentences):,} sentences, "
          f"{n_words:,} words; epochs={args.epochs}, workers={args.workers}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    questions = str(Path(gensim.__file__).parent / "test" / "test_data" / "questions-words.txt")
    params = dict(vector_size=100, window=5, negative=5, min_count=5, sample=1e-3, sg=1, epochs=args.epochs,
                  workers=args.workers, seed=1)

    def accuracy(index_to_key, vectors) -> float:
        kv = gensim.models.KeyedVectors(vector_size=vectors.shape[1])
        kv.add_vectors(index_to_key, vectors)
        return kv.evaluate_word_analogies(questions, restrict_vocab=30000)[0]

    rows = []
    Word2Vec(sentences[:200], min_count=1, epochs=1, workers=args.workers, engine="numba")  # compile (cached)
    trainers = {
        "gensim": lambda: GensimWord2Vec(sentences, **params),
        "lmforge numba": lambda: Word2Vec(sentences, engine="numba", **params),
    }
    trainers = {k: v for k, v in trainers.items() if k.split()[-1] not in args.skip}
    best: dict[str, float] = {}
    models: dict = {}
    for _ in range(args.repeat):
        for name, train in trainers.items():
            model, seconds = timed(train)
            best[name] = max(best.get(name, 0.0), n_words * args.epochs / seconds)
            models.setdefault(name, model)
    for name, model in models.items():
        loss = model.loss_history[-1] if hasattr(model, "loss_history") else float("nan")
        rows.append((name, best[name], accuracy(model.wv.index_to_key, model.wv.vectors), loss))
    if "lmforge numba" in models:
        model = models["lmforge numba"]
        ours = KeyedVectors(model.wv.index_to_key, model.wv.vectors)
        assert ours.evaluate_word_analogies(questions, restrict_vocab=30000)[0] == rows[-1][2], \
            "lmforge's and gensim's evaluators disagree"
    if "torch" not in args.skip:
        import torch

        torch_params = dict(params, workers=args.torch_threads or args.workers)
        model, seconds = timed(lambda: Word2Vec(sentences, engine="torch", **torch_params))
        label = f"lmforge torch ({'cuda' if torch.cuda.is_available() else 'cpu'}, {torch_params['workers']} thr)"
        rows.append((label, n_words * args.epochs / seconds,
                     accuracy(model.wv.index_to_key, model.wv.vectors), model.loss_history[-1]))

    print(f"\n{'word2vec skip-gram':<28} {'words/s':>10} {'vs gensim':>10} {'analogy acc':>12} {'last-epoch loss':>16}")
    reference = rows[0][1] if rows and rows[0][0] == "gensim" else None
    for name, speed, acc, loss in rows:
        ratio = f"{speed / reference:.2f}x" if reference else "-"
        print(f"{name:<28} {speed:>10,.0f} {ratio:>10} {100 * acc:>11.2f}% {loss:>16.4f}")

    if "bow" not in args.skip:
        from sklearn.feature_extraction.text import TfidfVectorizer

        documents = paragraphs
        runs = {
            "ours": lambda: BagOfWords().fit_transform(documents),
            "theirs": lambda: CountVectorizer().fit_transform(documents),
            "ours_tfidf": lambda: BagOfWords(tfidf=True, ngram_range=(1, 2)).fit_transform(documents),
            "theirs_tfidf": lambda: TfidfVectorizer(ngram_range=(1, 2)).fit_transform(documents),
        }
        seconds = {name: min(timed(fn)[1] for _ in range(args.repeat)) for name, fn in runs.items()}
        ours, theirs, ours_tfidf, theirs_tfidf = (seconds[k] for k in runs)
        print(f"\nbag-of-words fit_transform on {len(documents):,} documents (best of {args.repeat}):")
        print(f"  counts        lmforge {ours:6.2f} s  scikit-learn {theirs:6.2f} s  time ratio {ours / theirs:.2f}x")
        print(f"  tf-idf 1-2gr  lmforge {ours_tfidf:6.2f} s  scikit-learn {theirs_tfidf:6.2f} s  "
              f"time ratio {ours_tfidf / theirs_tfidf:.2f}x")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
