"""compare classify: folds that never leak, reproducible reports, clear errors, and what each representation buys."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from lmforge.cli import main
from lmforge.compare.classify import (
    ClassifySettings,
    LabelledTexts,
    compare_classify,
    make_folds,
    negation_task,
    normalise,
    presence_task,
    read_labelled,
    words,
)
from lmforge.errors import ConfigError, FormatError, InputError

BOW_ARMS = ["counts-1", "counts-1-2", "tfidf-1", "tfidf-1-2"]


def largest_gram_z(data: LabelledTexts, n: int) -> float:
    """The largest two-proportion z-score over all n-grams: how strongly one gram's presence tracks the label."""
    by_label = {lab: Counter() for lab in ("pos", "neg")}
    for text, lab in zip(data.texts, data.labels, strict=True):
        ws = words(text)
        by_label[lab].update(set(zip(*[ws[i:] for i in range(n)], strict=False)))
    n_pos, n_neg = Counter(data.labels)["pos"], Counter(data.labels)["neg"]
    z = 0.0
    for gram in set(by_label["pos"]) | set(by_label["neg"]):
        p, q = by_label["pos"][gram] / n_pos, by_label["neg"][gram] / n_neg
        both = (by_label["pos"][gram] + by_label["neg"][gram]) / (n_pos + n_neg)
        z = max(z, abs(p - q) / np.sqrt(both * (1 - both) * (1 / n_pos + 1 / n_neg) + 1e-12))
    return z


def test_negation_task_has_no_deciding_unigram_or_bigram():
    # Every unigram and bigram occurs at the same rate under both labels (the largest of ~600 z-scores stays within
    # sampling noise), while in the presence task a single word decides (z > 10).
    for n in (1, 2):
        assert largest_gram_z(negation_task(3000, seed=3), n) < 4.0
    assert largest_gram_z(presence_task(3000, seed=3), 1) > 10.0


def test_planted_duplicates_never_straddle_folds():
    rng = np.random.default_rng(0)
    base = presence_task(60, seed=1)
    texts, labels = list(base.texts), list(base.labels)
    planted = {}
    for i in rng.choice(len(texts), 12, replace=False):  # exact copies and copies that differ in case/punctuation
        copies = [texts[i], texts[i].upper(), texts[i].replace(" , ", ", ") + " !"]
        planted[normalise(texts[i])] = copies
        texts += copies
        labels += [labels[i]] * 3
    data = LabelledTexts(texts, labels)
    for seed in range(5):
        folds = make_folds(data, 4, seed)
        seen = np.concatenate([te for _, te in folds])
        assert sorted(seen.tolist()) == list(range(len(texts)))  # every example tested exactly once
        for tr, te in folds:
            train_groups = {normalise(texts[j]) for j in tr}
            assert not train_groups & {normalise(texts[j]) for j in te}
        fold_of = {j: k for k, (_, te) in enumerate(folds) for j in te}
        for group in planted:
            assert len({fold_of[j] for j in range(len(texts)) if normalise(texts[j]) == group}) == 1


def test_presence_task_bag_of_words_near_perfect_and_report_reproducible(tmp_path):
    data = presence_task(300, seed=0)
    settings = ClassifySettings(folds=3, seed=0)
    a = compare_classify(data, tmp_path / "a", arms=BOW_ARMS, settings=settings, progress=False)
    # Word presence decides the label. Over seeds 0-5 (n=300, 3 folds): the unigram arms score 0.98-1.0 in every
    # fold (counts-1: 1.0 always); uni+bigram tf-idf dilutes the deciding word among more features (0.89-0.97 mean).
    assert max(np.mean(arm.accuracy) for arm in a.arms) == 1.0
    assert min(a.arm("counts-1").accuracy + a.arm("tfidf-1").accuracy) >= 0.95
    assert np.mean(a.arm("tfidf-1-2").accuracy) >= 0.85
    b = compare_classify(data, tmp_path / "b", arms=BOW_ARMS, settings=settings, progress=False)
    strip = lambda r: [{k: v for k, v in x.items() if not k.endswith("_s") and "_s_" not in k}  # noqa: E731
                       for x in r.to_dict()["arms"]]
    assert strip(a) == strip(b) and a.folds == b.folds
    c = compare_classify(data, tmp_path / "c", arms=BOW_ARMS, settings=ClassifySettings(folds=3, seed=1),
                         progress=False)
    assert c.folds != a.folds  # the seed decides the folds
    saved = json.loads((tmp_path / "a" / "report.json").read_text())
    assert [x["accuracy_mean"] for x in saved["arms"]] == [float(np.mean(x.accuracy)) for x in a.arms]
    assert (tmp_path / "a" / "report.png").stat().st_size > 1000
    md = (tmp_path / "a" / "report.md").read_text()
    assert f"{a.arms[0].summary()['accuracy_mean']:.3f} ± {a.arms[0].summary()['accuracy_std']:.3f}" in md


def test_finished_arms_and_folds_are_reused(tmp_path, capsys):
    data = presence_task(60, seed=0)
    settings = ClassifySettings(folds=3)
    first = compare_classify(data, tmp_path, arms=["counts-1"], settings=settings, progress=False)
    saved = json.loads((tmp_path / "arms" / "counts-1.json").read_text())
    saved["result"]["accuracy"] = [0.123, *saved["result"]["accuracy"][1:2]]  # as if stopped after fold 2
    (tmp_path / "arms" / "counts-1.json").write_text(json.dumps(saved))
    again = compare_classify(data, tmp_path, arms=["counts-1", "tfidf-1"], settings=settings, progress=True)
    err = capsys.readouterr().err
    assert "counts-1 fold 1/3: done earlier" in err and "counts-1 fold 3/3 ..." in err
    assert again.arm("counts-1").accuracy == [0.123, *first.arm("counts-1").accuracy[1:]]
    other = compare_classify(data, tmp_path, arms=["counts-1"], settings=ClassifySettings(folds=3, seed=5),
                             progress=False)  # other settings: nothing is reused
    assert 0.123 not in other.arm("counts-1").accuracy


def test_readers(tmp_path):
    rows = [("a fine day", "pos"), ("a bad day", "neg")]
    (tmp_path / "d.csv").write_text("body,y\n" + "".join(f"{t},{y}\n" for t, y in rows))
    (tmp_path / "d.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    (tmp_path / "d.txt").write_text("".join(f"__label__{y} {t}\n" for t, y in rows))
    for name, cols in (("d.csv", ("body", "y")), ("d.tsv", ()), ("d.jsonl", ()), ("d.txt", ())):
        data = read_labelled(tmp_path / name, *cols)
        assert (data.texts, data.labels) == ([t for t, _ in rows], [y for _, y in rows]), name


def test_bad_input(tmp_path):
    one_class = LabelledTexts([f"text {i}" for i in range(10)], ["pos"] * 10, name="one.csv")
    with pytest.raises(InputError, match="at least 2 classes"):
        make_folds(one_class, 3, 0)
    few = LabelledTexts([f"text {i}" for i in range(10)], ["pos"] * 8 + ["neg"] * 2, name="few.csv")
    with pytest.raises(InputError, match=r"5 folds need at least 5 distinct examples of every class.*'neg': 2"):
        make_folds(few, 5, 0)
    dupes = LabelledTexts(["same"] * 6 + [f"t{i}" for i in range(6)], ["neg"] * 6 + ["pos"] * 6, name="dupes")
    with pytest.raises(InputError, match="'neg': 1"):  # six copies of one text are one example
        make_folds(dupes, 3, 0)
    (tmp_path / "missing_label.csv").write_text("text,label\ngood,pos\nbad\n")
    with pytest.raises(InputError, match="row 2 has no column 'label'"):
        read_labelled(tmp_path / "missing_label.csv")
    (tmp_path / "empty_label.jsonl").write_text('{"text": "x", "label": ""}\n')
    with pytest.raises(InputError, match="empty label"):
        read_labelled(tmp_path / "empty_label.jsonl")
    (tmp_path / "binary.csv").write_bytes(b"text,label\n\xff\xfe\x00bad,neg\n")
    with pytest.raises(InputError, match="binary.csv"):
        read_labelled(tmp_path / "binary.csv")
    (tmp_path / "bad.txt").write_text("no label here\n")
    with pytest.raises(FormatError, match="__label__"):
        read_labelled(tmp_path / "bad.txt")
    with pytest.raises(InputError, match="no such file"):
        read_labelled(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match="needs a pre-trained encoder"):
        compare_classify(presence_task(30), tmp_path / "o", arms=["encoder-frozen"], progress=False)
    # the CLI prints one line and exits 1
    assert main(["compare", "classify", "--data", str(tmp_path / "missing_label.csv"), "--out",
                 str(tmp_path / "o")]) == 1
    assert main(["compare", "classify", "--data", "builtin:nothing", "--out", str(tmp_path / "o")]) == 1


@pytest.mark.slow
def test_negation_contextual_encoder_beats_every_bag_of_words(tmp_path, minilm_path):
    # Only word order decides the negation task: the bag-of-words and averaged-word2vec arms stay at chance, while
    # the fine-tuned pre-trained encoder (all-MiniLM-L6-v2) reads "not ... good" from context. Calibration, these
    # exact settings (deterministic): encoder-finetuned 1.00 / 1.00 / 1.00 per fold, best bag-of-words arm 0.54
    # (margin 0.46). Fine-tuning MiniLM could be timed for seed 0 only on the shared machine; the bag-of-words side
    # was checked over seeds 0-5 (best arm 0.46-0.59). The small BERT trained from scratch (bert-mlm) memorises
    # 400 training sentences (training loss 0.14) and stays at chance (0.48-0.55), so it is not asserted here.
    data = negation_task(240, seed=0)
    settings = ClassifySettings(folds=3, seed=0, encoder_epochs=4, encoder_lr=1e-4)
    report = compare_classify(data, tmp_path, arms=[*BOW_ARMS, "encoder-finetuned"], settings=settings,
                              encoder=minilm_path, progress=False)
    best_bow = max(np.mean(report.arm(a).accuracy) for a in BOW_ARMS)
    contextual = np.mean(report.arm("encoder-finetuned").accuracy)
    assert best_bow < 0.62  # chance level: 0.46-0.59 over seeds 0-5 for the best of the four arms
    assert contextual >= best_bow + 0.15, (contextual, best_bow)


def test_cli_prints_the_report_values(tmp_path, capsys):
    rows = [(t, y) for t, y in zip(*(lambda d: (d.texts, d.labels))(presence_task(60, seed=2)), strict=True)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"review": t, "stars": y}) + "\n" for t, y in rows))
    out = tmp_path / "out"
    assert main(["compare", "classify", "--data", str(tmp_path / "d.jsonl"), "--text-col", "review", "--label-col",
                 "stars", "--folds", "3", "--arms", "counts-1", "tfidf-1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "report.json").read_text())
    assert [a["name"] for a in saved["arms"]] == ["counts-1", "tfidf-1"]
    for a in saved["arms"]:
        line = next(x for x in printed.splitlines() if x.startswith(a["name"] + " "))
        assert f"{a['accuracy_mean']:.3f} ± {a['accuracy_std']:.3f}" in line
        assert f"{a['macro_f1_mean']:.3f} ± {a['macro_f1_std']:.3f}" in line
