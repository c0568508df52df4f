"""Tokenizer files: every format round-trips with identical ids, folders follow the documented precedence,
saving is atomic, and bad files give one clear LmforgeError naming the problem."""

from __future__ import annotations

import json

import pytest

from lmforge.data.corpus import builtin_documents, iter_lines
from lmforge.errors import ConfigError, FormatError, InputError, LmforgeError
from lmforge.tokenizers import load_tokenizer, train_tokenizer
from lmforge.tokenizers.formats import LMFORGE_FILE


@pytest.fixture(scope="module")
def bpe():
    tok = train_tokenizer(builtin_documents()[:25], vocab_size=700, special_tokens=["<|endoftext|>", "<pad>"])
    tok.chat_template = "{{ messages[0]['content'] }}"
    return tok


@pytest.fixture(scope="module")
def wordpiece():
    return train_tokenizer(builtin_documents()[:25], kind="wordpiece", vocab_size=800)


@pytest.fixture(scope="module")
def sample():
    return list(iter_lines())[:400] + ["naïve 😀 <|endoftext|> 中文 [MASK] x<pad>y"]


@pytest.mark.parametrize("fmt", ["lmforge", "hf", "gpt2"])
def test_bpe_round_trips(bpe, sample, tmp_path, fmt):
    bpe.save(tmp_path, format=fmt)
    back = load_tokenizer(tmp_path)
    assert [back.encode(t) for t in sample] == [bpe.encode(t) for t in sample]
    assert back.vocab_size == bpe.vocab_size and back.get_vocab() == bpe.get_vocab()
    assert back.special_tokens == bpe.special_tokens
    if fmt in ("lmforge", "hf"):
        assert back.chat_template == bpe.chat_template
        assert back.eos_token == "<|endoftext|>" and back.pad_token == "<pad>"


@pytest.mark.parametrize("fmt", ["lmforge", "hf", "bert"])
def test_wordpiece_round_trips(wordpiece, sample, tmp_path, fmt):
    wordpiece.save(tmp_path, format=fmt)
    back = load_tokenizer(tmp_path)
    assert back.kind == "wordpiece"
    assert [back.encode(t) for t in sample] == [wordpiece.encode(t) for t in sample]
    assert back.encode("a", "b") == wordpiece.encode("a", "b")
    assert (back.cls_token, back.sep_token, back.unk_token) == ("[CLS]", "[SEP]", "[UNK]")


def test_lmforge_file_path_and_tiktoken_model_round_trip(gpt2_tiktoken_path, tmp_path, sample):
    gpt2 = load_tokenizer(gpt2_tiktoken_path)
    gpt2.save(tmp_path / "gpt2.json")
    back = load_tokenizer(tmp_path / "gpt2.json")
    assert [back.encode(t) for t in sample] == [gpt2.encode(t) for t in sample]


def test_folder_precedence(bpe, wordpiece, tmp_path):
    wordpiece.save(tmp_path, format="bert")
    assert load_tokenizer(tmp_path).kind == "wordpiece"
    bpe.save(tmp_path, format="gpt2")  # vocab.json + merges.txt beat vocab.txt
    assert load_tokenizer(tmp_path).kind == "bpe"
    wordpiece.save(tmp_path / "tokenizer.json", format="hf")  # tokenizer.json beats vocab.json
    assert load_tokenizer(tmp_path).kind == "wordpiece"
    bpe.save(tmp_path)  # lmforge JSON beats everything
    assert (tmp_path / LMFORGE_FILE).is_file() and load_tokenizer(tmp_path).kind == "bpe"


def test_vocab_txt_honours_tokenizer_config(wordpiece, tmp_path):
    wordpiece.save(tmp_path, format="bert")
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg["do_lower_case"] = False
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    cased = load_tokenizer(tmp_path / "vocab.txt")
    assert cased.encode("Hello", add_special_tokens=False) != wordpiece.encode("Hello", add_special_tokens=False)
    assert cased.encode("hello") == wordpiece.encode("hello")


def test_save_is_atomic(bpe, tmp_path, monkeypatch):
    target = tmp_path / "tok.json"
    bpe.save(target)
    before = target.read_bytes()
    import lmforge.tokenizers.formats as formats

    def exploding_dumps(obj):
        raise RuntimeError("disk full halfway")

    monkeypatch.setattr(formats, "_dumps", exploding_dumps)
    with pytest.raises(RuntimeError):
        bpe.save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temp file left behind

    import lmforge.fileio as fileio

    monkeypatch.undo()
    real_replace = fileio.os.replace

    def failing_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(fileio.os, "replace", failing_replace)
    with pytest.raises(OSError):
        bpe.save(target)
    monkeypatch.setattr(fileio.os, "replace", real_replace)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]


@pytest.mark.parametrize("name,content,match", [
    ("tokenizer.json", "{not json", "not valid JSON"),
    ("tokenizer.json", "[1, 2]", "expected a JSON object"),
    ("tokenizer.json", '{"hello": 1}', "not a tokenizer file"),
    ("tokenizer.json", '{"model": {"type": "BPE", "merges": []}}', "'vocab'"),
    ("tokenizer.json", '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]},'
                       ' "pre_tokenizer": {"type": "ByteLevel"}}', r"merges\[0\]"),
    ("tokenizer.json", '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}', r"merges\[0\]"),
    ("tokenizer.json", '{"model": {"type": "Unigram", "vocab": [["a", -1.0], ["b"]]}}', r"model.vocab\[1\]"),
    ("x.tiktoken", "!!!notbase64 zero\n", "line 1"),
    ("x.tiktoken", "YQ== 0\n", "256 single-byte"),
    ("model.bin", "junk", "unknown tokenizer format"),
    ("vocab.txt", "", "empty vocabulary"),
])
def test_malformed_files_name_the_problem(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(FormatError, match=match) as info:
        load_tokenizer(path)
    assert str(path) in str(info.value)


def test_missing_and_empty_paths(tmp_path):
    with pytest.raises(InputError, match="no such tokenizer"):
        load_tokenizer(tmp_path / "nope.json")
    with pytest.raises(FormatError, match="no tokenizer found"):
        load_tokenizer(tmp_path)


def test_merges_txt_errors_name_the_line(bpe, tmp_path):
    bpe.save(tmp_path, format="gpt2")
    merges = (tmp_path / "merges.txt").read_text().splitlines()
    merges[5] = "onlyonetoken"
    (tmp_path / "merges.txt").write_text("\n".join(merges))
    with pytest.raises(FormatError, match="line 6"):
        load_tokenizer(tmp_path)


def test_unknown_format_and_wrong_kind(bpe, wordpiece, tmp_path):
    with pytest.raises(ConfigError, match="format"):
        bpe.save(tmp_path, format="sentencepiece")
    with pytest.raises(ConfigError, match="WordPiece"):
        bpe.save(tmp_path, format="bert")
    with pytest.raises(ConfigError, match="byte-level BPE"):
        wordpiece.save(tmp_path, format="gpt2")
    assert issubclass(FormatError, LmforgeError)
