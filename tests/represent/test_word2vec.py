"""Word2Vec learns for real: planted word classes, falling loss, reproducibility, both engines, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.errors import ConfigError, InputError
from lmforge.represent import KeyedVectors, Word2Vec
from lmforge.represent._w2v_numba import build_alias_table
from lmforge.represent._w2v_torch import window_pairs
from lmforge.represent.word2vec import keep_probabilities, split_long

CLASSES = {c: [f"{c}{i}" for i in range(8)] for c in ("animal", "food", "color", "place", "verb")}
TEMPLATES = [
    ("the", "color", "animal", "verb", "food", "in", "place"),
    ("a", "animal", "from", "place", "verb", "color", "food"),
]


def planted_corpus(n_sentences: int = 4000, seed: int = 0) -> list[list[str]]:
    """Sentences from a tiny grammar: words of one class are interchangeable, so they share contexts."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_sentences):
        template = TEMPLATES[rng.integers(len(TEMPLATES))]
        out.append([str(rng.choice(CLASSES[w])) if w in CLASSES else w for w in template])
    return out


def class_of(word: str) -> str:
    return word.rstrip("0123456789")


def nearest_same_class_rate(kv: KeyedVectors) -> float:
    words = [w for ws in CLASSES.values() for w in ws]
    return float(np.mean([class_of(kv.most_similar(w, topn=1)[0][0]) == class_of(w) for w in words]))


@pytest.fixture(scope="module")
def corpus() -> list[list[str]]:
    return planted_corpus()


@pytest.mark.parametrize(
    "engine,sg", [("numba", 1), ("numba", 0), ("torch", 1), ("torch", 0)], ids=["numba-sg", "numba-cbow",
                                                                           "torch-sg", "torch-cbow"]
)
def test_planted_classes_are_nearest_neighbours_and_loss_falls(corpus, engine, sg):
    model = Word2Vec(corpus, vector_size=16, window=3, min_count=1, sample=0, epochs=5, sg=sg, workers=1,
                     engine=engine, batch_size=256)
    # chance of a same-class nearest neighbour is 7 / 51 ≈ 0.14
    assert nearest_same_class_rate(model.wv) >= 0.95
    losses = model.loss_history
    assert len(losses) == 5 and losses[-1] < losses[0] - 0.1
    assert np.isfinite(model.wv.vectors).all()


def test_engines_reach_the_same_loss(corpus):
    losses = {
        engine: Word2Vec(corpus, vector_size=16, window=3, min_count=1, epochs=3, workers=1, engine=engine,
                         batch_size=256).loss_history[-1]
        for engine in ("numba", "torch")
    }
    assert losses["numba"] == pytest.approx(losses["torch"], rel=0.03)


def test_fixed_seed_is_reproducible_with_one_worker(corpus):
    first = Word2Vec(corpus, vector_size=12, min_count=1, epochs=2, workers=1, seed=7, engine="numba")
    second = Word2Vec(corpus, vector_size=12, min_count=1, epochs=2, workers=1, seed=7, engine="numba")
    other = Word2Vec(corpus, vector_size=12, min_count=1, epochs=2, workers=1, seed=8, engine="numba")
    assert np.array_equal(first.wv.vectors, second.wv.vectors)
    assert first.loss_history == second.loss_history
    assert not np.array_equal(first.wv.vectors, other.wv.vectors)


def test_two_workers_learn_as_well(corpus):
    # Hogwild threads race, so the result is not reproducible; sample=0 as in the one-worker test above (with
    # subsampling this tiny grammar loses most class-word occurrences and the rate varies 0.7-1.0 from seed to seed,
    # with one worker as with two). Over 20 seeds with two workers every run scored 1.0.
    model = Word2Vec(corpus, vector_size=16, window=3, min_count=1, sample=0, epochs=5, workers=2, engine="numba")
    assert nearest_same_class_rate(model.wv) >= 0.95
    assert model.loss_history[-1] < model.loss_history[0] - 0.1


def test_vocabulary_follows_gensim_rules(corpus):
    model = Word2Vec(corpus + [["rare"]], vector_size=8, min_count=2, epochs=1, engine="numba")
    assert "rare" not in model.wv
    counts = model.wv.counts
    assert (np.diff(counts) <= 0).all()  # most frequent first
    assert model.wv.index_to_key[0] in {"the", "a"} or counts[0] == counts.max()


def test_subsampling_formula_matches_gensim():
    # gensim: p = (sqrt(c / (s * total)) + 1) * (s * total) / c, capped at 1
    counts = np.array([5000, 300, 10])
    t = 1e-3 * counts.sum()
    expected = np.minimum((np.sqrt(counts / t) + 1) * t / counts, 1.0)
    np.testing.assert_allclose(keep_probabilities(counts, 1e-3), expected, rtol=1e-6)
    assert (keep_probabilities(counts, 0) == 1).all()


def test_alias_table_samples_the_noise_distribution():
    probs = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])
    accept, alias = build_alias_table(probs)
    # exact probability of each outcome implied by the table
    implied = np.zeros_like(probs)
    for k in range(len(probs)):
        implied[k] += accept[k] / len(probs)
        implied[alias[k]] += (1 - accept[k]) / len(probs)
    np.testing.assert_allclose(implied, probs, atol=1e-12)


def test_window_pairs_respect_sentences_and_reach():
    centre, context = window_pairs(np.array([0, 0, 0, 0, 1, 1]), np.array([1, 2, 1, 2, 2, 2]), 2)
    pairs = set(zip(centre.tolist(), context.tolist(), strict=True))
    assert pairs == {(0, 1), (1, 0), (1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2), (4, 5), (5, 4)}


def test_long_sentences_are_split_not_truncated():
    assert split_long(np.array([0, 25000]), limit=10000).tolist() == [0, 10000, 20000, 25000]


def test_corpus_file_and_save(tmp_path, corpus):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(s) for s in corpus[:500]), encoding="utf-8")
    model = Word2Vec(corpus_file=path, vector_size=8, min_count=1, epochs=1, workers=1, engine="numba")
    model.save(tmp_path / "vectors.safetensors")
    loaded = KeyedVectors.load(tmp_path / "vectors.safetensors")
    assert loaded.index_to_key == model.wv.index_to_key
    assert np.array_equal(loaded.vectors, model.wv.vectors) and np.array_equal(loaded.counts, model.wv.counts)


def test_bad_input_gives_clear_errors():
    with pytest.raises(InputError, match="empty corpus"):
        Word2Vec([], min_count=1)
    with pytest.raises(InputError, match="empty corpus"):
        Word2Vec([[], []], min_count=1)
    with pytest.raises(InputError, match="min_count=5"):
        Word2Vec([["just", "a", "few", "words"]])
    with pytest.raises(InputError, match="expected a list of tokens"):
        Word2Vec(["a sentence as one string"], min_count=1)
    with pytest.raises(ConfigError, match="vector_size"):
        Word2Vec(vector_size=0)
    with pytest.raises(ConfigError, match="engine"):
        Word2Vec(engine="gpu")
    with pytest.raises(ConfigError, match="hs"):
        Word2Vec(hs=1)
    with pytest.raises(InputError, match="no such corpus file"):
        Word2Vec(corpus_file="/no/such/file.txt")
