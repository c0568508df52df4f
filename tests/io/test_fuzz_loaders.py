"""Bad-input fuzzing of every loader: a truncated or byte-corrupted file either loads or raises an ``LmforgeError``
that names the file — never another exception type, never a hang (each test has a time limit).

Hypothesis runs derandomized (the same cases every run) so CI repeats exactly.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmforge
from lmforge.errors import LmforgeError

FUZZ = settings(max_examples=25, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("fuzz_loaders")]


def corruptions(size: int):
    """A damaged copy of a file of ``size`` bytes: cut at a point, or some bytes overwritten."""
    cut = st.builds(lambda n: ("cut", n, b""), st.integers(0, max(size - 1, 0)))
    flip = st.builds(lambda at, junk: ("flip", at, junk), st.integers(0, max(size - 1, 0)),
                     st.binary(min_size=1, max_size=16))
    return st.one_of(cut, flip)


def damage(data: bytes, how: tuple) -> bytes:
    kind, at, junk = how
    if kind == "cut":
        return data[:at]
    return data[:at] + junk + data[at + len(junk):]


def check_loader(path: Path, load: Callable[[Path], object]) -> None:
    """``load(path)`` succeeds or raises an LmforgeError whose message names the file or its folder."""
    try:
        load(path)
    except LmforgeError as e:
        names = {path.name, path.parent.name}
        assert any(n in str(e) for n in names), f"error does not name the file: {e}"


# ---------------------------------------------------------------- artifacts (valid), built once


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    from lmforge.io import save_model
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.represent.keyed_vectors import KeyedVectors
    from lmforge.tokenizers import train_tokenizer

    root = tmp_path_factory.mktemp("valid")
    tok = train_tokenizer(["the cat sat on the mat, the dog sat on the log. " * 20], vocab_size=300)
    tok.save(root / "tokenizer.json", format="hf")
    (root / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\n##s\nsat\n", encoding="utf-8")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    save_model(root / "model", model, tok)
    kv = KeyedVectors(["the", "cat", "sat", "naïve"], np.random.default_rng(0).standard_normal((4, 5), np.float32))
    kv.save_word2vec_format(root / "vectors.bin", binary=True)
    kv.save_word2vec_format(root / "vectors.txt", binary=False)
    kv.save(root / "vectors.safetensors")
    return {
        "tokenizer.json": root / "tokenizer.json",
        "vocab.txt": root / "vocab.txt",
        "model": root / "model",
        "vectors.bin": root / "vectors.bin",
        "vectors.txt": root / "vectors.txt",
        "vectors.safetensors": root / "vectors.safetensors",
    }


def _fuzz_file(tmp_path: Path, valid: Path, how: tuple, load: Callable[[Path], object], name: str | None = None):
    bad = tmp_path / (name or valid.name)
    bad.write_bytes(damage(valid.read_bytes(), how))
    check_loader(bad, load)


# ---------------------------------------------------------------- tokenizers


@FUZZ
@given(how=corruptions(4096))
def test_tokenizer_json(artifacts, tmp_path, how):
    from lmforge.tokenizers import load_tokenizer

    _fuzz_file(tmp_path, artifacts["tokenizer.json"], how, load_tokenizer)


@FUZZ
@given(how=corruptions(4096))
def test_vocab_txt(artifacts, tmp_path, how):
    from lmforge.tokenizers import load_tokenizer

    _fuzz_file(tmp_path, artifacts["vocab.txt"], how, load_tokenizer)


# ---------------------------------------------------------------- word vectors


@FUZZ
@given(how=corruptions(4096))
def test_word2vec_binary(artifacts, tmp_path, how):
    from lmforge.represent.keyed_vectors import KeyedVectors

    _fuzz_file(tmp_path, artifacts["vectors.bin"], how, lambda p: KeyedVectors.load_word2vec_format(p, binary=True))


@FUZZ
@given(how=corruptions(4096))
def test_word2vec_text(artifacts, tmp_path, how):
    from lmforge.represent.keyed_vectors import KeyedVectors

    _fuzz_file(tmp_path, artifacts["vectors.txt"], how, lambda p: KeyedVectors.load_word2vec_format(p))


@FUZZ
@given(how=corruptions(4096))
def test_word_vectors_safetensors(artifacts, tmp_path, how):
    from lmforge.represent.keyed_vectors import KeyedVectors

    _fuzz_file(tmp_path, artifacts["vectors.safetensors"], how, KeyedVectors.load)


# ---------------------------------------------------------------- model folders (safetensors, lmforge.json)


@FUZZ
@given(which=st.sampled_from(["model.safetensors", "lmforge.json", "tokenizer.json"]), how=corruptions(8192))
def test_model_folder(artifacts, tmp_path, which, how):
    folder = tmp_path / "model"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(artifacts["model"], folder)
    target = folder / which
    target.write_bytes(damage(target.read_bytes(), how))
    try:
        lmforge.load(folder)
    except LmforgeError as e:
        assert "model" in str(e), f"error does not name the folder or file: {e}"


# ---------------------------------------------------------------- GGUF (the real SmolLM2 file's header region)


@pytest.fixture(scope="module")
def gguf_head(smollm2_gguf_path) -> bytes:
    with open(smollm2_gguf_path, "rb") as f:
        return f.read(3_000_000)  # header, metadata (the 49k-token vocabulary) and the tensor table


@settings(max_examples=15, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(how=corruptions(3_000_000))
def test_gguf(gguf_head, tmp_path, how):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(damage(gguf_head, how))
    check_loader(bad, lmforge.load)


# ---------------------------------------------------------------- token folders


@pytest.fixture(scope="module")
def token_folder(tmp_path_factory, artifacts) -> Path:
    from lmforge.data.tokens import prepare_tokens
    from lmforge.tokenizers import load_tokenizer

    src = tmp_path_factory.mktemp("src")
    (src / "a.txt").write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    out = tmp_path_factory.mktemp("tokens") / "data"
    prepare_tokens([src / "a.txt"], load_tokenizer(artifacts["tokenizer.json"]), out)
    return out


@FUZZ
@given(which=st.sampled_from(["manifest.json", "train.bin", "val.bin", "tokenizer.json"]), how=corruptions(4096))
def test_token_folder(token_folder, tmp_path, which, how):
    from lmforge.data.tokens import open_tokens

    folder = tmp_path / "data"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(token_folder, folder)
    target = folder / which
    target.write_bytes(damage(target.read_bytes(), how))
    try:
        open_tokens(folder)
    except LmforgeError as e:
        assert "data" in str(e), f"error does not name the folder or file: {e}"


def test_token_ids_outside_the_vocabulary_are_refused_before_training(token_folder, tmp_path):
    """A token file holding an id the model cannot embed fails with a clear error before the first step."""
    from lmforge.train.pretrain import pretrain_gpt

    folder = tmp_path / "data"
    shutil.copytree(token_folder, folder)
    train = folder / "train.bin"
    ids = np.fromfile(train, dtype=np.uint16)
    ids[len(ids) // 2] = 65_000  # far beyond the 300-token vocabulary
    ids.tofile(train)
    with pytest.raises(LmforgeError, match="train.bin"):
        pretrain_gpt(folder, tmp_path / "run", preset="tiny", model_overrides={"n_layer": 1, "block_size": 16},
                     train_overrides={"steps": 1, "batch_size": 2}, progress=False)
