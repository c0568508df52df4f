"""GPT-2's REAL vocabulary (50,256 ranks shipped by openai-whisper): lmforge's byte-level BPE gives the same
ids as ``tiktoken`` built from the same file."""

from __future__ import annotations

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from tiktoken.load import load_tiktoken_bpe

from lmforge.data.corpus import builtin_text, iter_lines
from lmforge.tokenizers import CL100K_PATTERN, GPT2_PATTERN, load_tokenizer

pytestmark = pytest.mark.xdist_group("gpt2_tiktoken")


@pytest.fixture(scope="module")
def ranks(gpt2_tiktoken_path):
    return load_tiktoken_bpe(str(gpt2_tiktoken_path))


@pytest.fixture(scope="module")
def reference(ranks):
    return tiktoken.Encoding("gpt2-local", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


@pytest.fixture(scope="module")
def gpt2(gpt2_tiktoken_path):
    return load_tokenizer(gpt2_tiktoken_path)


def test_loads_the_real_gpt2_ranks(gpt2):
    assert gpt2.vocab_size == 50257
    assert gpt2.special_tokens == {"<|endoftext|>": 50256}
    assert gpt2.eos_token_id == 50256
    assert gpt2.id_to_token(gpt2.encode(" the")[0]) == "Ġthe"


def test_same_ids_as_tiktoken_on_every_corpus_line(gpt2, reference):
    lines = list(iter_lines())
    mismatches = [line for line in lines if gpt2.encode(line) != reference.encode_ordinary(line)]
    assert not mismatches, mismatches[:3]
    text = builtin_text()
    assert gpt2.encode(text) == reference.encode_ordinary(text)
    assert gpt2.encode_many([text, text[:1000]]) == [reference.encode_ordinary(text),
                                                      reference.encode_ordinary(text[:1000])]


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cn")), max_size=80))
def test_same_ids_as_tiktoken_on_generated_unicode(gpt2, reference, text):
    ids = gpt2.encode(text)
    assert ids == reference.encode_ordinary(text)
    assert gpt2.decode(ids) == text


def test_special_token_written_in_text(gpt2_tiktoken_path, reference, tmp_path):
    text = "one<|endoftext|>two"
    gpt2 = load_tokenizer(gpt2_tiktoken_path)
    assert gpt2.split_special_tokens  # .tiktoken: text stays text, as encode_ordinary
    assert gpt2.encode(text) == gpt2.encode_many([text])[0] == reference.encode_ordinary(text)
    gpt2.save(tmp_path / "lm.json")
    gpt2.save(tmp_path / "hf", format="hf")
    for again in (load_tokenizer(tmp_path / "lm.json"), load_tokenizer(tmp_path / "hf")):
        assert again.encode(text) == reference.encode_ordinary(text)
    gpt2.split_special_tokens = False  # HF's default: the special token is matched whole
    assert gpt2.encode(text) == gpt2.encode_many([text])[0] == reference.encode(text, allowed_special="all")
    assert gpt2.decode(gpt2.encode(text), skip_special_tokens=True) == "onetwo"


def test_cl100k_pattern_with_gpt2_ranks_matches_tiktoken(gpt2_tiktoken_path, ranks):
    reference = tiktoken.Encoding("gpt2-cl100k-pattern", pat_str=CL100K_PATTERN, mergeable_ranks=ranks,
                                  special_tokens={})
    ours = load_tokenizer(gpt2_tiktoken_path, pattern=CL100K_PATTERN, special_tokens={})
    lines = list(iter_lines())[:3000] + ["I'VE got 1234567 apples!!\n\n\n  and\r\n  more", "x \t\n y"]
    expected = [reference.encode_ordinary(t) for t in lines]
    assert [ours.encode(t) for t in lines] == expected
    assert ours.encode_many(lines) == expected  # the compiled cl100k splitter


def test_gpt2_written_as_hf_and_gpt2_files_keeps_ids(gpt2, reference, tmp_path):
    from tokenizers import Tokenizer as HFTokenizer

    gpt2.save(tmp_path / "hf", format="hf")
    gpt2.save(tmp_path / "gpt2", format="gpt2")
    hf = HFTokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json"))
    again = load_tokenizer(tmp_path / "gpt2")
    lines = list(iter_lines())[:1500]
    expected = [reference.encode_ordinary(t) for t in lines]
    assert [hf.encode(t).ids for t in lines] == expected
    assert [again.encode(t) for t in lines] == expected
