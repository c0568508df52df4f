"""Token folders: ids identical to Hugging Face ``tokenizers`` on the saved tokenizer.json, reuse, errors, sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tokenizers as hf_tokenizers

from lmforge.data.corpus import builtin_documents
from lmforge.data.tokens import (
    BlockSampler,
    fixed_windows,
    open_tokens,
    prepare_tokens,
    token_dtype,
    tokenizer_fingerprint,
)
from lmforge.errors import ConfigError, FormatError, InputError
from lmforge.tokenizers import train_tokenizer

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return builtin_documents()[:12]


@pytest.fixture(scope="module")
def tokenizer(docs):
    return train_tokenizer(docs, kind="bpe", vocab_size=600, special_tokens=[EOT], show_progress=False)


@pytest.fixture()
def text_files(tmp_path, docs):
    folder = tmp_path / "texts"
    folder.mkdir()
    for i, doc in enumerate(docs):
        (folder / f"doc{i:02d}.txt").write_text(doc, encoding="utf-8")
    return folder


def test_tokens_equal_hf_tokenizers_on_the_saved_tokenizer(tmp_path, text_files, tokenizer, docs):
    data = prepare_tokens([text_files], tokenizer, tmp_path / "tok", val_fraction=0.1)
    reference = hf_tokenizers.Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    eot = reference.token_to_id(EOT)
    expected = []
    for doc in docs:  # files are read in sorted order: doc00, doc01, ...
        expected += reference.encode(doc, add_special_tokens=False).ids + [eot]
    stream = np.concatenate([data.train, data.val])
    assert stream.tolist() == expected
    assert data.train.dtype == np.uint16 and isinstance(data.train, np.memmap)
    m = data.manifest
    assert m["train_tokens"] + m["val_tokens"] == len(expected)
    assert m["val_tokens"] == round(0.1 * len(expected))
    assert m["tokenizer_sha256"] == tokenizer_fingerprint(tokenizer)
    assert [s["path"] for s in m["sources"]] == [str(p) for p in sorted(text_files.iterdir())]
    assert m["sources"][0]["bytes"] == (text_files / "doc00.txt").stat().st_size
    assert reference.decode(data.val.tolist(), skip_special_tokens=False).endswith(docs[-1][-50:] + EOT)


def test_token_dtype_fits_the_vocabulary():
    assert token_dtype(2**16) == np.uint16
    assert token_dtype(2**16 + 1) == np.uint32
    assert np.iinfo(token_dtype(50257)).max >= 50256


def test_unchanged_input_is_reused_and_changes_rebuild(tmp_path, text_files, tokenizer, docs):
    out = tmp_path / "tok"
    prepare_tokens([text_files], tokenizer, out)
    stamp = (out / "train.bin").stat().st_mtime_ns, (out / "train.bin").stat().st_ino
    again = prepare_tokens([text_files], tokenizer, out)
    assert ((out / "train.bin").stat().st_mtime_ns, (out / "train.bin").stat().st_ino) == stamp
    (text_files / "doc03.txt").write_text(docs[3] + "\nOne more sentence.", encoding="utf-8")
    changed = prepare_tokens([text_files], tokenizer, out)
    assert changed.manifest["train_tokens"] > again.manifest["train_tokens"]
    other = train_tokenizer(docs, kind="bpe", vocab_size=400, special_tokens=[EOT], show_progress=False)
    rebuilt = prepare_tokens([text_files], other, out)
    assert rebuilt.manifest["tokenizer_sha256"] == tokenizer_fingerprint(other)
    assert rebuilt.manifest["train_tokens"] > changed.manifest["train_tokens"]  # a smaller vocab: more tokens


def test_builtin_corpus_is_the_default(tmp_path, tokenizer):
    data = prepare_tokens(None, tokenizer, tmp_path / "b")
    assert data.manifest["sources"][0]["path"] == "builtin"
    assert data.manifest["documents"] == len(builtin_documents())


def test_bad_input_gets_clear_errors(tmp_path, tokenizer, docs):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(InputError, match="empty.txt: file is empty"):
        prepare_tokens([empty], tokenizer, tmp_path / "x")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(InputError, match="blob.txt: looks like a binary file"):
        prepare_tokens([binary], tokenizer, tmp_path / "x")
    with pytest.raises(InputError, match="no manifest.json"):
        open_tokens(tmp_path / "nowhere")
    good = tmp_path / "good.txt"
    good.write_text(docs[0], encoding="utf-8")
    data = prepare_tokens([good], tokenizer, tmp_path / "ok")
    other = train_tokenizer(docs, kind="bpe", vocab_size=300, special_tokens=[EOT], show_progress=False)
    with pytest.raises(ConfigError, match="made with another tokenizer"):
        data.check_tokenizer(other)
    data.check_tokenizer(tokenizer)
    with open(tmp_path / "ok" / "train.bin", "r+b") as f:
        f.truncate(10)
    with pytest.raises(FormatError, match="train.bin: expected"):
        open_tokens(tmp_path / "ok")
    with pytest.raises(ConfigError, match="val_fraction"):
        prepare_tokens([good], tokenizer, tmp_path / "y", val_fraction=1.5)


def test_block_sampler_windows_and_exact_resume():
    tokens = np.arange(1000, dtype=np.uint16)
    sampler = BlockSampler(tokens, block_size=16, seed=3)
    x, y = sampler.next_batch(64)
    assert x.shape == y.shape == (64, 16) and x.dtype == np.int64
    assert (np.diff(x, axis=1) == 1).all() and (y == x + 1).all()  # contiguous windows, targets shifted by one
    assert x.min() >= 0 and y.max() <= 999
    state = json.loads(json.dumps(sampler.state_dict()))  # plain data
    expected = [sampler.next_batch(8)[0] for _ in range(3)]
    fresh = BlockSampler(tokens, block_size=16, seed=999)
    fresh.load_state_dict(state)
    assert all((fresh.next_batch(8)[0] == e).all() for e in expected)
    starts = np.concatenate([sampler.next_offsets(500) for _ in range(20)])
    assert starts.min() == 0 and starts.max() == 1000 - 16 - 1  # every window start is reachable
    with pytest.raises(ConfigError, match="block_size 2000"):
        BlockSampler(tokens, block_size=2000)


def test_fixed_windows_are_deterministic_and_disjoint():
    x, y = fixed_windows(np.arange(1000), 10, 7)
    assert x.shape == (7, 10) and (y == x + 1).all()
    starts = x[:, 0]
    assert (starts % 10 == 0).all() and (np.diff(starts) >= 10).all()
    with pytest.raises(ConfigError, match="validation split holds only 5 tokens"):
        fixed_windows(np.arange(5), 10, 3)
