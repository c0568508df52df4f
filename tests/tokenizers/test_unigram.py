"""The Unigram model and the character-level BPE model on small hand-made vocabularies, against HF ``tokenizers``
models built from the same pieces: Viterbi ties (many paths with equal scores), unknown runs, byte fallback,
and BPE's unk fusion, byte fallback, prefixes/suffixes and ignore_merges."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

from lmforge.errors import InputError
from lmforge.tokenizers.bpe import CharBPEModel, byte_token
from lmforge.tokenizers.unigram import UnigramModel

# integer scores: a + b == b + a exactly, so equal-score paths are common and the tie rule decides
PIECES = [("<unk>", 0.0), ("a", -2.0), ("b", -2.0), ("c", -3.0), ("ab", -4.0), ("ba", -4.0), ("aa", -3.0),
          ("abc", -5.0), ("bb", -4.0), ("é", -1.0), ("aé", -2.5), ("x", -0.5)]
BYTES = [(byte_token(b), -6.0) for b in b"\xc3\xa9\xe4\xb8\xad"]  # é and 中, not ☕
ALPHABET = st.text(alphabet=st.sampled_from(list("abcéx中☕z")), max_size=24)


def _hf_unigram(pieces, unk_id, byte_fallback) -> HFTokenizer:
    return HFTokenizer(models.Unigram(pieces, unk_id, byte_fallback))


@pytest.fixture(scope="module")
def unigrams():
    out = {}
    for name, pieces, fallback in (("plain", PIECES, False), ("bytes", PIECES + BYTES, True)):
        out[name] = (_hf_unigram(pieces, 0, fallback), UnigramModel(pieces, unk_id=0, byte_fallback=fallback))
    return out


@settings(max_examples=300, deadline=None)
@given(ALPHABET, st.sampled_from(["plain", "bytes"]))
def test_unigram_viterbi_matches_hf_including_ties(unigrams, word, name):
    hf, ours = unigrams[name]
    ref = hf.model.tokenize(word)
    assert [(i, s, e) for i, s, e in ours.tokenize(word)] == [
        (t.id, len(word.encode()[:t.offsets[0]].decode()), len(word.encode()[:t.offsets[1]].decode()))
        for t in ref]


def test_unigram_best_path_and_unknowns():
    m = UnigramModel(PIECES, unk_id=0)
    assert [m.pieces[i][0] for i in m.encode_word("abc")] == ["abc"]
    assert m.viterbi("zz☕a") == [(0, 3, None), (3, 4, 1)]  # unknown chars fuse into one run
    assert m.encode_word("zz☕a") == [0, 1]
    assert m.explain_word("zab") == [("z", m.unk_score), ("ab", -4.0)]
    with pytest.raises(InputError, match="unk_id"):
        UnigramModel(PIECES[1:]).encode_word("z")


def _hf_bpe(vocab, merges, **kw) -> HFTokenizer:
    return HFTokenizer(models.BPE(vocab, merges, **kw))


BPE_VOCAB = {"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "aa": 5, "aab": 6, "bc": 7, "é": 8, "abc": 9,
             **{byte_token(b): 10 + k for k, b in enumerate(b"\xe4\xb8\xad")}}  # 中's bytes only
BPE_MERGES = [("a", "b"), ("a", "a"), ("aa", "b"), ("b", "c"), ("a", "bc"), ("ab", "c")]


@pytest.mark.parametrize("options", [
    {"unk_token": "<unk>", "fuse_unk": True},
    {"unk_token": "<unk>", "fuse_unk": False},
    {"unk_token": "<unk>", "byte_fallback": True},
    {"byte_fallback": True},
    {"unk_token": "<unk>", "ignore_merges": True},
    {},
], ids=["fuse", "nofuse", "bytes+unk", "bytes", "ignore_merges", "drop"])
@settings(max_examples=120, deadline=None)
@given(word=ALPHABET)
def test_char_bpe_matches_hf(options, word):
    hf = _hf_bpe_cached(tuple(sorted(options.items())))
    ours = CharBPEModel(BPE_VOCAB, BPE_MERGES, unk_id=0 if "unk_token" in options else None,
                        byte_fallback=options.get("byte_fallback", False), fuse_unk=options.get("fuse_unk", False),
                        ignore_merges=options.get("ignore_merges", False))
    assert ours.encode_word(word) == [t.id for t in hf.model.tokenize(word)]


_HF_CACHE: dict = {}


def _hf_bpe_cached(key):
    if key not in _HF_CACHE:
        _HF_CACHE[key] = _hf_bpe(BPE_VOCAB, BPE_MERGES, **dict(key))
    return _HF_CACHE[key]


def test_char_bpe_prefix_and_suffix_match_hf():
    vocab = {"a": 0, "##a": 1, "##b": 2, "b": 3, "##b</w>": 4, "ab": 5, "ab</w>": 6, "b</w>": 7,
             "##a</w>": 8, "a</w>": 9}
    merges = [("a", "##b"), ("a", "##b</w>")]
    hf = _hf_bpe(vocab, merges, continuing_subword_prefix="##", end_of_word_suffix="</w>")
    ours = CharBPEModel(vocab, merges, continuing_subword_prefix="##", end_of_word_suffix="</w>")
    for word in ["ab", "aab", "abab", "b", "a", "ba", "abb"]:
        assert ours.encode_word(word) == [t.id for t in hf.model.tokenize(word)], word


def test_char_bpe_lengths_match_hf_byte_offsets():
    """The byte length each token covers (for offsets): HF's model reports byte offsets into the word."""
    m = CharBPEModel(BPE_VOCAB, BPE_MERGES, unk_id=0, byte_fallback=True, fuse_unk=True)
    hf = _hf_bpe(BPE_VOCAB, BPE_MERGES, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    for word in ["aab中☕☕c", "中中", "☕", "abcé"]:
        ids, lengths = m.encode_with_lengths(word)
        ref = hf.model.tokenize(word)
        assert ids == [t.id for t in ref]
        assert lengths == [t.offsets[1] - t.offsets[0] for t in ref]


def test_json_floats_are_read_as_hf_reads_them():
    """HF's JSON float reading is not correctly rounded; its own re-serialization (shortest round-trip digits)
    shows the floats it holds, which ``hf_json_float`` must reproduce, and ``hf_json_float_text`` must spell."""
    import json
    import random

    from lmforge.tokenizers.formats import hf_json_float, hf_json_float_text

    rng = random.Random(0)
    values = [-rng.uniform(0, 30) for _ in range(1500)] + [-rng.uniform(0, 1e-4) for _ in range(300)]
    texts = [repr(v) for v in values] + ["-12.5", "-0.1", "-1e-07", "-3.25E+1", "-123456789012345678901.5",
                                         "-0.00000000000000000000123"]
    def held_by_hf(spelled_scores: list[str]) -> list[float]:
        vocab = ",".join(f'["p{k}", {t}]' for k, t in enumerate(spelled_scores))
        text = '{"model": {"type": "Unigram", "unk_id": 0, "vocab": [' + vocab + "]}}"
        return [score for _, score in json.loads(HFTokenizer.from_str(text).to_str())["model"]["vocab"]]

    held = held_by_hf(texts)
    assert [hf_json_float(t) for t in texts] == held
    assert sum(hf_json_float(t) != float(t) for t in texts) > 50  # the difference is real, not hypothetical
    back = held_by_hf([hf_json_float_text(v) for v in values])
    exact = [score == v for score, v in zip(back, values, strict=True)]
    assert sum(exact) >= 0.99 * len(values)  # a few floats have no spelling serde reads back exactly
    assert all(hf_json_float(hf_json_float_text(v)) == v for v, ok in zip(values, exact, strict=True) if ok)
