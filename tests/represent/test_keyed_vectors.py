"""KeyedVectors on its own: lookups, unknown words and malformed files give clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.errors import FormatError, InputError
from lmforge.represent import KeyedVectors


@pytest.fixture
def kv() -> KeyedVectors:
    rng = np.random.default_rng(0)
    return KeyedVectors(["king", "queen", "man", "woman", "apple"], rng.normal(size=(5, 6)).astype(np.float32))


def test_lookup_shapes_and_neighbours(kv):
    assert kv["king"].shape == (6,) and kv[["king", "man"]].shape == (2, 6)
    sims = kv.most_similar("king", topn=None)
    assert sims.shape == (5,) and sims[0] == pytest.approx(1.0, abs=1e-6)
    top = kv.most_similar("king", topn=10)
    assert len(top) == 4 and "king" not in dict(top)
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert kv.similar_by_vector(kv["queen"], topn=1)[0][0] == "queen"
    assert kv.similarity("man", "woman") == pytest.approx(kv.similarity("woman", "man"))


def test_unknown_word_is_a_clear_error_and_a_key_error(kv):
    with pytest.raises(InputError, match="'prince' is not in the vocabulary"):
        kv.most_similar("prince")
    with pytest.raises(KeyError):
        kv["prince"]


def test_safetensors_round_trip(kv, tmp_path):
    kv.save(tmp_path / "v.safetensors")
    loaded = KeyedVectors.load(tmp_path / "v.safetensors")
    assert loaded.index_to_key == kv.index_to_key and np.array_equal(loaded.vectors, kv.vectors)


@pytest.mark.parametrize(
    "content,binary,message",
    [
        (b"", False, "header"),
        (b"not a header\n", False, "header"),
        (b"2 3\nking 1 2 3\n", False, "ends early"),
        (b"2 3\nking 1 2 3\nqueen 1 2\n", False, "expected a word and 3 numbers"),
        (b"1 3\nking 1 two 3\n", False, "not a number"),
        (b"2 3\nking " + np.zeros(3, "<f4").tobytes() + b"\nqueen " + b"\x00" * 5, True, "truncated"),
    ],
    ids=["empty", "no-header", "short", "wrong-width", "not-a-number", "truncated-binary"],
)
def test_malformed_vector_files_name_the_problem(tmp_path, content, binary, message):
    path = tmp_path / "bad.vec"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=message) as err:
        KeyedVectors.load_word2vec_format(path, binary=binary)
    assert str(path) in str(err.value)


def test_not_an_lmforge_file(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"garbage")
    with pytest.raises(FormatError, match="safetensors"):
        KeyedVectors.load(path)


def test_words_with_spaces_cannot_be_written(tmp_path):
    with pytest.raises(InputError, match="whitespace"):
        KeyedVectors(["new york"], np.ones((1, 2), dtype=np.float32)).save_word2vec_format(tmp_path / "v.txt")


def test_analogy_file_errors(kv, tmp_path):
    bad = tmp_path / "q.txt"
    bad.write_text("king queen man woman\n")
    with pytest.raises(FormatError, match="before the first ': section'"):
        kv.evaluate_word_analogies(bad)
    empty = tmp_path / "e.txt"
    empty.write_text(": section\n")
    with pytest.raises(FormatError, match="no analogy questions"):
        kv.evaluate_word_analogies(empty)


@pytest.mark.parametrize("suffix", [".safetensors", ".bin", ".txt"])
def test_load_vectors_reads_what_save_vectors_wrote_by_suffix(kv, tmp_path, suffix):
    from lmforge.represent import load_vectors, save_vectors

    path = tmp_path / f"vectors{suffix}"
    save_vectors(kv, path)
    back = load_vectors(path)
    assert back.index_to_key == kv.index_to_key
    np.testing.assert_allclose(back.vectors, kv.vectors, rtol=1e-6, atol=1e-6)  # text keeps 6+ significant digits
    with pytest.raises(InputError, match="no such vectors file"):
        load_vectors(tmp_path / "missing.bin")
