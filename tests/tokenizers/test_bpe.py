"""Byte-level BPE reference: byte alphabet, merge helpers, the incremental trainer (vs a naive recount loop),
and round-trip fuzzing of encode/decode."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.data.corpus import builtin_documents
from lmforge.errors import ConfigError, InputError
from lmforge.tokenizers import train_tokenizer
from lmforge.tokenizers.bpe import (
    BPEModel,
    apply_merges,
    bytes_to_token_string,
    bytes_to_unicode,
    get_stats,
    merge,
    merges_from_ranks,
    pair_table_from_ranks,
    token_string_to_bytes,
    train_bpe,
)
from lmforge.tokenizers.pipeline import ByteLevel
from lmforge.tokenizers.train import count_pretokens


def test_bytes_to_unicode_is_a_printable_bijection():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert token_string_to_bytes(bytes_to_token_string(bytes(range(256)))) == bytes(range(256))


def test_get_stats_and_merge():
    assert get_stats([1, 2, 1, 2, 1]) == {(1, 2): 2, (2, 1): 2}
    assert merge([1, 1, 1], (1, 1), 9) == [9, 1]  # left to right, non-overlapping
    assert merge([], (1, 2), 3) == []


def _naive_train(word_counts: dict[bytes, int], num_merges: int, min_frequency: int) -> list[tuple[int, int]]:
    """The textbook loop: recount every pair of every word after every merge."""
    words = {w: list(w) for w in word_counts}
    merges = []
    for k in range(num_merges):
        counts: dict[tuple[int, int], int] = {}
        for w, ids in words.items():
            get_stats(ids, counts, word_counts[w])
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        if counts[best] < min_frequency:
            break
        merges.append(best)
        words = {w: merge(ids, best, 256 + k) for w, ids in words.items()}
    return merges


def test_incremental_trainer_equals_naive_recount():
    docs = builtin_documents()[:12]
    counts = count_pretokens(docs, ByteLevel())
    assert train_bpe(counts, 150, min_frequency=2) == _naive_train(counts, 150, 2)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=8), st.integers(1, 6), max_size=25),
       st.integers(0, 40), st.integers(0, 3))
def test_incremental_trainer_equals_naive_on_random_counts(counts, num_merges, min_frequency):
    assert train_bpe(counts, num_merges, min_frequency=min_frequency) == _naive_train(counts, num_merges,
                                                                                         min_frequency)


def test_training_is_deterministic_and_encodes_trained_words_whole():
    docs = builtin_documents()[:20]
    a = train_tokenizer(docs, vocab_size=600)
    b = train_tokenizer(list(docs), vocab_size=600)
    assert a.model.merges == b.model.merges and len(a.model.merges) == 600 - 256
    # the first merge is the most frequent pair of the corpus
    counts = count_pretokens(docs, ByteLevel())
    stats: dict = {}
    for w, c in counts.items():
        get_stats(list(w), stats, c)
    assert a.model.merges[0] == min(stats, key=lambda p: (-stats[p], p))


def test_vocab_size_counts_bytes_and_specials():
    tok = train_tokenizer(builtin_documents()[:10], vocab_size=400, special_tokens=["<|endoftext|>", "<pad>"])
    assert tok.vocab_size == 400
    assert tok.special_tokens == {"<|endoftext|>": 398, "<pad>": 399}
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token_id == 399
    with pytest.raises(ConfigError, match="byte alphabet"):
        train_tokenizer(["abc"], vocab_size=200)
    with pytest.raises(ConfigError, match="byte alphabet"):
        train_tokenizer(["abc"], vocab_size=256, special_tokens=["<s>"])


def test_min_frequency_stops_training_early():
    tok = train_tokenizer(["ab ab ab cd"], vocab_size=1000, min_frequency=3)
    assert [tok.id_to_token(256)] == ["ab"] and tok.vocab_size == 257


def test_apply_merges_lowest_rank_first():
    # (b, c) ranks before (a, b): "abc" → a + bc, not ab + c
    table = {(97, 98): (1, 300), (98, 99): (0, 301)}
    assert apply_merges(list(b"abc"), table) == [97, 301]


def test_ranks_and_merges_recovery_agree():
    tok = train_tokenizer(builtin_documents()[:10], vocab_size=500)
    tb = tok.model.token_bytes
    assert merges_from_ranks(tb) == tok.model.merges
    ranked = BPEModel(tb, [], pair_table=pair_table_from_ranks(tb))
    for w in [b"the", b" function", b" returns", "naïve 🤖".encode()]:
        assert ranked.encode_word(w) == tok.model.encode_word(w)


_TOK = None


def _tok():
    global _TOK
    if _TOK is None:
        _TOK = train_tokenizer(builtin_documents()[:30], vocab_size=800, special_tokens=["<|endoftext|>"])
    return _TOK


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_roundtrip_any_unicode(text):
    tok = _tok()
    ids = tok.encode(text)
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert b"".join(tok.token_bytes(i) for i in ids) == text.encode("utf-8")


@pytest.mark.parametrize("text", [
    "👩‍👩‍👧‍👦 family", "e\u0301 combining", "\x00\x01\x7f controls\r\n", "中文 日本語 한국어",
    "שלום עולם مرحبا", "<|endoftext|> inside", "  leading and trailing  ", "\ufeffBOM", "",
])
def test_roundtrip_hard_cases(text):
    tok = _tok()
    assert tok.decode(tok.encode(text), skip_special_tokens=False) == text


def test_lone_surrogate_is_a_clear_error():
    with pytest.raises(InputError, match="surrogate"):
        _tok().encode("abc \ud800 def")
    with pytest.raises(InputError, match="surrogate"):
        train_tokenizer(["ok \udfff"], vocab_size=300)
