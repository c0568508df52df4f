"""``lmforge bow`` and ``lmforge word2vec``: the commands run end to end and report errors in one line."""

from __future__ import annotations

import numpy as np

from lmforge.cli import main
from lmforge.represent import KeyedVectors


def test_bow_shows_terms_of_a_text(capsys):
    assert main(["bow", "--show", "the for statement iterates over a sequence", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "documents x" in out and "6 known terms" in out


def test_word2vec_train_query_eval_map(tmp_path, capsys, gensim_test_data):
    rng = np.random.default_rng(0)
    animals, foods = ["cat", "dog", "cow", "pig"], ["bread", "rice", "soup", "cake"]
    lines = [f"the {rng.choice(animals)} runs fast" if i % 2 else f"we cook {rng.choice(foods)} slowly"
             for i in range(1500)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines), encoding="utf-8")
    vectors = tmp_path / "v.txt"
    assert main(["word2vec", "train", "--corpus", str(corpus), "--min-count", "1", "--epochs", "5", "--sample", "0",
                 "--vector-size", "12", "--workers", "1", "--engine", "numba", "--quiet", "--out", str(vectors)]) == 0
    assert "loss per epoch" in capsys.readouterr().out
    kv = KeyedVectors.load_word2vec_format(vectors)
    assert {"cat", "bread"} <= set(kv.index_to_key)

    assert main(["word2vec", "similar", "cat", "--vectors", str(vectors), "--topn", "3"]) == 0
    neighbours = capsys.readouterr().out.split()[::2]
    assert set(neighbours) <= set(animals)  # the other animals are the nearest words
    assert main(["word2vec", "analogy", "cat", "dog", "bread", "--vectors", str(vectors)]) == 0
    assert "cat - dog + bread" in capsys.readouterr().out
    questions = tmp_path / "q.txt"
    questions.write_text(": animals\ncat dog cow pig\ndog cat pig cow\n: unknown\nzebra cat dog cow\n")
    assert main(["word2vec", "eval", str(questions), "--vectors", str(vectors)]) == 0
    assert "analogy accuracy" in capsys.readouterr().out
    assert main(["word2vec", "eval", str(gensim_test_data / "wordsim353.tsv"), "--vectors", str(vectors)]) == 1
    assert "no scored word pairs" in capsys.readouterr().err  # no pair of its words is known here
    png = tmp_path / "map.png"
    assert main(["word2vec", "map", "cat", "dog", "bread", "rice", "--vectors", str(vectors), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_word2vec_errors_are_one_line(tmp_path, capsys):
    assert main(["word2vec", "similar", "cat", "--vectors", str(tmp_path / "none.safetensors")]) == 1
    assert "no such vectors file" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("this is not a vectors file\n")
    assert main(["word2vec", "similar", "cat", "--vectors", str(bad)]) == 1
    assert "header" in capsys.readouterr().err
