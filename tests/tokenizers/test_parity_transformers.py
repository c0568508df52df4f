"""WordPiece on a REAL vocabulary (all-MiniLM-L6-v2's uncased BERT vocab.txt, 30,522 entries): lmforge gives
the same ids as ``transformers``' BertTokenizerFast; HF folders lmforge writes load in ``transformers``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerFast

from lmforge.data.corpus import builtin_documents, iter_lines
from lmforge.tokenizers import load_tokenizer, train_tokenizer

pytestmark = pytest.mark.xdist_group("minilm_transformers")

MIXED = [
    "Héllo, Wörld! Ça va? naïve façade",  # accents
    "中文字符 and 日本語のテキスト 한국어",  # CJK
    "emoji 😀👍🏽 family 👩‍👩‍👧 flags 🇫🇷",  # emoji
    "control\x00chars\x07 and\ttabs\r\nnewlines \u200b zero width",  # control chars
    "a" * 120 + " supercalifragilisticexpialidocious",  # over-long word → [UNK]
    "[CLS] [MASK] [SEP] inline specials", "", "   ", "ÀÉÎÕÜ ﬁ ½ ℌ",
]


@pytest.fixture(scope="module")
def vocab_txt(minilm_path):
    return minilm_path / "vocab.txt"


@pytest.fixture(scope="module")
def reference(vocab_txt):
    return BertTokenizerFast(vocab=str(vocab_txt))


@pytest.fixture(scope="module")
def ours(vocab_txt, tmp_path_factory):
    # a bare vocab.txt (no tokenizer_config.json beside it): BertTokenizerFast's defaults
    folder = tmp_path_factory.mktemp("bare")
    (folder / "vocab.txt").write_bytes(vocab_txt.read_bytes())
    return load_tokenizer(folder / "vocab.txt")


def test_real_vocab_loads(ours):
    assert ours.kind == "wordpiece" and ours.vocab_size == 30522
    assert (ours.cls_token, ours.sep_token, ours.pad_token_id, ours.mask_token) == ("[CLS]", "[SEP]", 0, "[MASK]")


def test_same_ids_as_bert_tokenizer_fast_on_corpus(ours, reference):
    lines = list(iter_lines())
    expected = reference(lines)["input_ids"]
    got = [ours.encode(t) for t in lines]
    assert got == expected


def test_same_ids_and_offsets_on_mixed_text(ours, reference):
    ref = reference(MIXED, return_offsets_mapping=True)
    got = ours.encode_batch(MIXED, return_offsets=True)
    assert got["input_ids"] == ref["input_ids"]
    assert got["offsets"] == [[tuple(o) for o in row] for row in ref["offset_mapping"]]
    for ids in ref["input_ids"]:
        assert ours.decode(ids) == reference.decode(ids, skip_special_tokens=True)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cn")), max_size=60))
def test_same_ids_on_generated_unicode(ours, reference, text):
    assert ours.encode(text) == reference(text)["input_ids"]


def test_pairs_padding_truncation_match_transformers(ours, reference):
    a = ["The quick brown fox jumps over the lazy dog", "short"]
    b = ["A second, somewhat longer sentence that goes on and on", "tiny pair"]
    ref = reference(a, b, padding=True, truncation="longest_first", max_length=16)
    got = ours.encode_batch(a, b, padding=True, truncation=True, max_length=16)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert got[key] == ref[key], key
    reference.padding_side = "left"
    try:
        ref = reference(a, padding="max_length", max_length=20)
    finally:
        reference.padding_side = "right"
    got = ours.encode_batch(a, padding="max_length", max_length=20, padding_side="left", return_tensors="np")
    assert got["input_ids"].tolist() == ref["input_ids"]
    assert got["attention_mask"].tolist() == ref["attention_mask"]


def test_minilm_tokenizer_json_matches_too(minilm_path, reference):
    ours = load_tokenizer(minilm_path)  # the folder: tokenizer.json wins over vocab.txt
    lines = list(iter_lines())[:2000] + MIXED
    assert [ours.encode(t) for t in lines] == reference(lines)["input_ids"]


def test_hf_folder_written_by_lmforge_loads_in_transformers(tmp_path):
    tok = train_tokenizer(builtin_documents()[:30], vocab_size=1000, special_tokens=["<|endoftext|>"])
    tok.pad_token = "<|endoftext|>"
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}<|endoftext|>{% endfor %}"
    tok.save(tmp_path, format="hf")
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    assert isinstance(hf, PreTrainedTokenizerFast)
    assert hf.eos_token == "<|endoftext|>" and hf.pad_token == "<|endoftext|>"
    lines = list(iter_lines())[:500]
    assert hf(lines)["input_ids"] == [tok.encode(t) for t in lines]
    rendered = hf.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert rendered == "hi<|endoftext|>"
    assert load_tokenizer(tmp_path).chat_template == tok.chat_template


def test_bert_folder_written_by_lmforge_loads_in_transformers(tmp_path):
    tok = train_tokenizer(builtin_documents()[:30], kind="wordpiece", vocab_size=1200)
    tok.save(tmp_path, format="bert")
    hf = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))
    lines = list(iter_lines())[:500] + MIXED
    assert hf(lines)["input_ids"] == [tok.encode(t) for t in lines]


def test_real_smollm2_tokenizer_json_matches_transformers(smollm2_gguf_path, tmp_path):
    """A real 49,152-token Llama-family BPE (SmolLM2, converted from its GGUF file by transformers), written as
    tokenizer.json + tokenizer_config.json: lmforge loads it with identical ids, specials and chat template."""
    import json

    reference = AutoTokenizer.from_pretrained(str(smollm2_gguf_path.parent), gguf_file=smollm2_gguf_path.name)
    reference.save_pretrained(str(tmp_path))
    ours = load_tokenizer(tmp_path)
    assert ours.vocab_size == len(reference) and ours.chat_template == reference.chat_template
    assert ours.eos_token == reference.eos_token
    lines = list(iter_lines())[:3000] + MIXED + ["<|im_start|>user\nHi there!<|im_end|>\n", "x<|endoftext|>y"]
    expected = reference(lines, add_special_tokens=True)["input_ids"]
    assert [ours.encode(t) for t in lines] == expected
    assert ours.encode_many(lines, add_special_tokens=True) == expected
    assert json.loads((tmp_path / "tokenizer.json").read_text())["model"]["type"] == "BPE"
