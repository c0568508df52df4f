"""The compiled paths give exactly what the readable references give: merges (trainer), pre-token counts,
and ids (bulk encoding through the numba GPT-2 splitter + BPE, or the regex split + numba BPE)."""

from __future__ import annotations

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.data.corpus import builtin_documents, iter_lines
from lmforge.errors import InputError
from lmforge.tokenizers import CL100K_PATTERN, GPT2_PATTERN, train_tokenizer
from lmforge.tokenizers.bpe import train_bpe
from lmforge.tokenizers.fast import (
    FastBPE,
    char_classes,
    count_pretokens_compiled,
    train_bpe_fast,
)
from lmforge.tokenizers.pipeline import ByteLevel
from lmforge.tokenizers.train import count_pretokens

pytestmark = pytest.mark.xdist_group("numba_tokenizers")
# Text that stresses the splitter: contractions, space runs, digits, punctuation, scripts, emoji.
SPLITTER_CHARS = "'sdtmlrveSDTMLRVEſ \t\n\r 0123!?.,-_aZé中😀\u00a0\u2003\u0301"
TRICKY = st.text(alphabet=st.one_of(st.sampled_from(list(SPLITTER_CHARS)),
                                    st.characters(blacklist_categories=("Cs",))), max_size=60)


@pytest.fixture(scope="module")
def corpus_counts():
    return count_pretokens(builtin_documents(), ByteLevel())


@pytest.fixture(scope="module")
def gpt2_style():
    return train_tokenizer(vocab_size=2000, special_tokens=["<|endoftext|>"])


def test_compiled_trainer_equals_reference_on_corpus(corpus_counts):
    for min_frequency in (0, 2, 50):
        assert train_bpe_fast(corpus_counts, 1500, min_frequency=min_frequency, chunk=97) == train_bpe(
            corpus_counts, 1500, min_frequency=min_frequency)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=10), st.integers(1, 9), max_size=40), st.integers(1, 60),
       st.integers(0, 3))
def test_compiled_trainer_equals_reference_on_random_counts(counts, num_merges, min_frequency):
    assert train_bpe_fast(counts, num_merges, min_frequency=min_frequency, chunk=5) == train_bpe(
        counts, num_merges, min_frequency=min_frequency)


def test_compiled_counts_equal_regex_counts(corpus_counts):
    assert count_pretokens_compiled(builtin_documents(), GPT2_PATTERN) == corpus_counts
    cl100k = count_pretokens(builtin_documents(), ByteLevel(pattern=CL100K_PATTERN))
    assert count_pretokens_compiled(builtin_documents(), CL100K_PATTERN) == cl100k
    with pytest.raises(InputError, match="surrogate"):
        count_pretokens_compiled(["ok \ud800"], GPT2_PATTERN)
    assert count_pretokens_compiled(["x"], r"\w+") is None  # other patterns: the regex path


@settings(max_examples=400, deadline=None)
@given(st.lists(TRICKY, max_size=3))
def test_compiled_splitters_count_like_the_regex(texts):
    assert count_pretokens_compiled(texts, GPT2_PATTERN) == count_pretokens(texts, ByteLevel())
    assert count_pretokens_compiled(texts, CL100K_PATTERN) == count_pretokens(texts,
                                                                              ByteLevel(pattern=CL100K_PATTERN))


def test_char_classes_follow_the_regex_module():
    classes = char_classes()
    for cp in list(range(0, 0x3000, 7)) + [0x1F600, 0x20000, 0xE0001, 0x10FFFF]:
        c = chr(cp)
        expected = 1 if regex.match(r"\p{L}", c) else 2 if regex.match(r"\p{N}", c) else 3 if regex.match(
            r"\s", c) else 0
        assert classes[cp] == expected, hex(cp)


def test_bulk_encoding_equals_reference_on_corpus(gpt2_style):
    lines = list(iter_lines())
    assert [gpt2_style._encode_document(t) for t in lines] == [gpt2_style._encode_ids(t) for t in lines]
    docs = builtin_documents()
    assert gpt2_style.encode_many(docs) == [gpt2_style._encode_ids(d) for d in docs]
    whole = "<|endoftext|>".join(docs)  # long: encode() itself takes the compiled path
    assert len(whole) > 100_000 and gpt2_style.encode(whole) == gpt2_style._encode_ids(whole)


@pytest.fixture(scope="module")
def cl100k_style():
    return train_tokenizer(builtin_documents()[:40], vocab_size=1200, pattern=CL100K_PATTERN)


@settings(max_examples=800, deadline=None)
@given(TRICKY)
def test_bulk_encoding_equals_reference_on_generated_text(gpt2_style, cl100k_style, text):
    assert gpt2_style._encode_document(text) == gpt2_style._encode_ids(text)
    assert gpt2_style._encode_document(text + "<|endoftext|>" + text) == gpt2_style._encode_ids(
        text + "<|endoftext|>" + text)
    assert cl100k_style._encode_document(text) == cl100k_style._encode_ids(text)


def test_bulk_encoding_with_prefix_space_and_other_patterns(gpt2_style):
    docs = builtin_documents()[:15] + ["x", " y", "", "I'LL 12345"]
    prefixed = train_tokenizer(builtin_documents()[:20], vocab_size=600)
    prefixed.pre_tokenizer = ByteLevel(add_prefix_space=True, pattern=GPT2_PATTERN)
    assert prefixed.encode_many(docs) == [prefixed._encode_ids(d) for d in docs]
    cl100k = train_tokenizer(builtin_documents()[:20], vocab_size=600, pattern=CL100K_PATTERN)
    assert cl100k.encode_many(docs) == [cl100k._encode_ids(d) for d in docs]


def test_batched_numba_bpe_equals_encode_word(gpt2_tiktoken_path):
    from lmforge.tokenizers import load_tokenizer

    gpt2 = load_tokenizer(gpt2_tiktoken_path)  # tiktoken-style rank table
    words = sorted({p for line in list(iter_lines())[:3000] for p in regex.findall(GPT2_PATTERN, line)})
    words += ["", "😀" * 5, " " * 40, "ĠĠ", "\x00\x01"]
    assert FastBPE(gpt2.model).encode_pieces(words) == [gpt2.model.encode_word(w.encode()) for w in words]


def test_bulk_encoding_workers_and_errors(gpt2_style):
    docs = builtin_documents()[:30]
    assert gpt2_style.encode_many(docs, num_workers=2) == gpt2_style.encode_many(docs, num_workers=1)
    assert gpt2_style.encode_many(["a b"], add_special_tokens=True) == [gpt2_style.encode("a b")]
    with pytest.raises(InputError, match="surrogate"):
        gpt2_style.encode_many(["fine", "bad \udc80 text"])
    with pytest.raises(InputError, match="str"):
        gpt2_style.encode_many([b"bytes"])
