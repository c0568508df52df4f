"""KeyedVectors and word2vec files against gensim 4.4: the same vectors give the same files, neighbours and scores."""

from __future__ import annotations

import numpy as np
import pytest
from gensim.models import KeyedVectors as GensimKeyedVectors
from gensim.models import Word2Vec as GensimWord2Vec
from gensim.utils import simple_preprocess

from lmforge.represent import KeyedVectors

pytestmark = pytest.mark.xdist_group("gensim_lee")


@pytest.fixture(scope="module")
def gensim_kv(gensim_test_data) -> GensimKeyedVectors:
    """Real vectors: gensim's skip-gram trained on its bundled Lee news corpus (300 documents)."""
    with open(gensim_test_data / "lee_background.cor", encoding="utf-8") as f:
        sentences = [simple_preprocess(line) for line in f]
    model = GensimWord2Vec(sentences, vector_size=40, min_count=2, epochs=10, seed=3, workers=1)
    return model.wv


@pytest.fixture(scope="module")
def mixed_case(gensim_kv) -> tuple[GensimKeyedVectors, KeyedVectors]:
    """The same vectors plus capitalised duplicates of some words (exercises case-insensitive lookups)."""
    rng = np.random.default_rng(0)
    extra = [w.capitalize() for w in gensim_kv.index_to_key[:300:3]]
    keys = gensim_kv.index_to_key[:150] + extra + gensim_kv.index_to_key[150:]
    vectors = np.vstack([gensim_kv.vectors[:150], rng.normal(size=(len(extra), 40)).astype(np.float32),
                         gensim_kv.vectors[150:]])
    theirs = GensimKeyedVectors(vector_size=40)
    theirs.add_vectors(keys, vectors)
    return theirs, KeyedVectors(keys, vectors)


def _ours(kv: GensimKeyedVectors) -> KeyedVectors:
    return KeyedVectors(kv.index_to_key, kv.vectors)


@pytest.mark.parametrize("binary", [False, True])
def test_lmforge_files_load_in_gensim(gensim_kv, tmp_path, binary):
    path = tmp_path / ("v.bin" if binary else "v.txt")
    _ours(gensim_kv).save_word2vec_format(path, binary=binary)
    loaded = GensimKeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert loaded.index_to_key == gensim_kv.index_to_key
    assert np.array_equal(loaded.vectors, gensim_kv.vectors)


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_files_load_in_lmforge(gensim_kv, tmp_path, binary):
    path = tmp_path / ("v.bin" if binary else "v.txt")
    gensim_kv.save_word2vec_format(str(path), binary=binary)
    loaded = KeyedVectors.load_word2vec_format(path, binary=binary)
    assert loaded.index_to_key == gensim_kv.index_to_key
    assert np.array_equal(loaded.vectors, gensim_kv.vectors)
    assert KeyedVectors.load_word2vec_format(path, binary=binary, limit=7).index_to_key == gensim_kv.index_to_key[:7]


@pytest.mark.parametrize("options", [{}, {"restrict_vocab": 2000}, {"case_insensitive": False}], ids=str)
def test_analogy_evaluation_matches_gensim(mixed_case, gensim_test_data, options):
    theirs, ours = mixed_case
    questions = gensim_test_data / "questions-words.txt"
    their_score, their_sections = theirs.evaluate_word_analogies(str(questions), **options)
    our_score, our_sections = ours.evaluate_word_analogies(questions, **options)
    assert sum(len(s["correct"]) + len(s["incorrect"]) for s in our_sections[:-1]) > 100  # a real test
    assert our_score == their_score
    assert our_sections == their_sections


def test_word_pairs_evaluation_matches_gensim(mixed_case, gensim_test_data):
    theirs, ours = mixed_case
    pairs = gensim_test_data / "wordsim353.tsv"
    (their_p, their_s, their_oov) = theirs.evaluate_word_pairs(str(pairs))
    (our_p, our_s, our_oov) = ours.evaluate_word_pairs(pairs)
    assert our_oov == their_oov
    np.testing.assert_allclose(tuple(our_p), tuple(their_p), rtol=1e-5)
    np.testing.assert_allclose(tuple(our_s), tuple(their_s), rtol=1e-5)
    assert our_p.statistic == our_p[0] and our_s.pvalue == our_s[1]  # (statistic, pvalue) like gensim's


def test_queries_match_gensim(gensim_kv):
    ours = _ours(gensim_kv)
    for positive, negative in [("government", ()), (["police", "court"], ["fire"]), (["australia"], ["sydney"])]:
        theirs = gensim_kv.most_similar(positive=positive, negative=list(negative), topn=8)
        mine = ours.most_similar(positive, negative, topn=8)
        assert [w for w, _ in mine] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in mine], [s for _, s in theirs], rtol=1e-6)
    words = ["police", "court", "government", "bowler"]
    assert ours.doesnt_match(words) == gensim_kv.doesnt_match(words)
    assert ours.similarity("police", "court") == pytest.approx(float(gensim_kv.similarity("police", "court")), rel=1e-6)
