"""GGUF reading (real SmolLM2-135M file), RoPE row order, pre-tokenizer regexes, bad files, and the weight cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.errors import ConfigError, FormatError
from lmforge.io import cache
from lmforge.io.gguf import (
    PRE_TOKENIZERS,
    gguf_config_kwargs,
    gguf_tokenizer,
    gguf_tokenizer_spec,
    open_gguf,
    unpermute_rope_rows,
)


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf_path):
    return open_gguf(smollm2_gguf_path)


def test_config_of_real_file(smollm2):
    from lmforge.models.gpt import GPTConfig

    kwargs = gguf_config_kwargs(smollm2)
    # SmolLM2-135M's published shape: Llama architecture, 30 layers, 576 wide, 9 heads / 3 KV heads, vocab 49,152.
    assert smollm2.architecture == "llama"
    assert (kwargs["n_layer"], kwargs["n_embd"], kwargs["n_head"], kwargs["n_kv_head"]) == (30, 576, 9, 3)
    assert (kwargs["vocab_size"], kwargs["ffn_hidden"], kwargs["block_size"]) == (49152, 1536, 8192)
    assert kwargs["rope_theta"] == 100000.0 and kwargs["tie_embeddings"] is True
    config = GPTConfig(**kwargs)
    assert config.head_dim == 64 and config.norm == "rms" and config.mlp == "swiglu"


def test_tokenizer_spec_of_real_file(smollm2):
    spec = gguf_tokenizer_spec(smollm2)
    assert len(spec["vocab"]) == 49152 and len(spec["merges"]) == 48900
    # Control tokens (token_type 3) are the special ones, matched whole: <|endoftext|>, <|im_start|>, ...
    assert {"<|endoftext|>", "<|im_start|>", "<|im_end|>"} <= set(spec["special_tokens"])
    assert all(spec["vocab"][tok] == i for tok, i in spec["special_tokens"].items())
    assert (spec["bos_token"], spec["eos_token"]) == ("<|im_start|>", "<|im_end|>")
    assert (spec["pattern"], spec["individual_digits"]) == PRE_TOKENIZERS["smollm"]
    # Every merge joins two tokens into a third that is in the vocabulary.
    assert all(a + b in spec["vocab"] for a, b in spec["merges"][:2000])
    assert "<|im_start|>" in spec["chat_template"]


def _llama_cpp_permute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    # What llama.cpp's HF→GGUF converter does to attn_q / attn_k rows (convert_hf_to_gguf.py, LlamaModel.permute).
    return weight.reshape(n_heads, 2, weight.shape[0] // n_heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape
    )


@given(n_heads=st.integers(1, 4), half=st.integers(1, 8), cols=st.integers(1, 5))
@settings(max_examples=50, deadline=None)
def test_unpermute_inverts_llama_cpp_permutation(n_heads, half, cols):
    w = np.random.default_rng(0).normal(size=(n_heads * 2 * half, cols)).astype(np.float32)
    np.testing.assert_array_equal(unpermute_rope_rows(_llama_cpp_permute(w, n_heads), n_heads), w)


# Pieces that meet at the pre-tokenizer's edge cases: runs of spaces before digits, contractions, CR/LF, accents,
# special tokens inside the text.
_PIECES = st.sampled_from(["a", "bc", "Z", " ", "  ", "\t", "\n", "\r\n", "1", "42", "'s", "'ll", "é", "!", ".", "€",
                           "日本", "<|im_start|>", "<|im_end|>", "Hello", " world"])
_TEXT = st.lists(_PIECES, max_size=12).map("".join)


@pytest.fixture(scope="module")
def smollm2_tokenizers(smollm2):
    """(lmforge's tokenizer from the GGUF, the HF ``tokenizers`` oracle built from the same vocabulary and merges
    with the pre-tokenizer SmolLM2's own tokenizer.json declares: Digits(individual) then ByteLevel)."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    spec = gguf_tokenizer_spec(smollm2)
    oracle = Tokenizer(BPE(spec["vocab"], spec["merges"]))
    oracle.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    oracle.decoder = decoders.ByteLevel()
    oracle.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in spec["special_tokens"]])
    return gguf_tokenizer(smollm2), oracle


@given(text=_TEXT)
@settings(max_examples=200, deadline=None)
def test_gguf_tokenizer_matches_hf_tokenizers(smollm2_tokenizers, text):
    ours, oracle = smollm2_tokenizers
    ids = ours.encode(text)
    assert ids == oracle.encode(text).ids
    assert ours.decode(ids, skip_special_tokens=False) == text


def test_gguf_tokenizer_roles_and_template(smollm2, smollm2_tokenizers):
    tok, _ = smollm2_tokenizers
    meta = smollm2.metadata
    assert tok.bos_token_id == meta["tokenizer.ggml.bos_token_id"]
    assert tok.eos_token_id == meta["tokenizer.ggml.eos_token_id"]
    assert tok.pad_token_id == meta["tokenizer.ggml.padding_token_id"]
    assert tok.encode("<|im_start|>")[0] == tok.bos_token_id  # a special token is matched whole, not spelled out
    assert tok.chat_template == meta["tokenizer.chat_template"]


@pytest.mark.parametrize("cut", [2, 100, 50_000, 1_000_000, -100])
def test_truncated_gguf_names_the_file(smollm2_gguf_path, tmp_path, cut):
    data = smollm2_gguf_path.read_bytes()
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(data[:cut])
    with pytest.raises(FormatError, match="cut.gguf"):
        open_gguf(bad)


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 definitely a zip")
    with pytest.raises(FormatError, match="model.gguf.*not a GGUF file"):
        open_gguf(bad)
    with pytest.raises(FormatError, match="no such GGUF file"):
        open_gguf(tmp_path / "missing.gguf")


def test_unsupported_architecture(smollm2):
    from dataclasses import replace

    other = replace(smollm2, metadata={**smollm2.metadata, "general.architecture": "mamba"})
    with pytest.raises(ConfigError, match="general.architecture is 'mamba'"):
        gguf_config_kwargs(other)


# --- the cache -------------------------------------------------------------------------------------------------

def _tensors():
    g = torch.Generator().manual_seed(0)
    return {"b.weight": torch.randn(64, 32, generator=g), "a.bias": torch.randn(7, generator=g),
            "c.half": torch.randn(5, 3, generator=g).to(torch.bfloat16)}


class _Maker:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return _tensors(), {"note": "made by the test", "n": str(self.calls)}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name])


def test_cache_round_trip_under_env_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "c"))
    make = _Maker()
    first, first_meta = cache.cached("k1", make)
    second, second_meta = cache.cached("k1", make)
    assert make.calls == 1
    _assert_same(first, second)
    assert first_meta == second_meta == {"note": "made by the test", "n": "1"}
    assert cache.entry_path("k1").parent.parent == tmp_path / "c"
    assert cache.entry_path("k1").is_file()
    assert [p.name for p in cache.entry_path("k1").parent.iterdir()] == ["k1.safetensors"]  # no temp left behind


@pytest.mark.parametrize("damage", ["flip_byte", "edit_metadata", "truncate", "empty"])
def test_damaged_cache_entry_is_made_again(tmp_path, monkeypatch, damage):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    make = _Maker()
    cache.cached("k", make)
    path = cache.entry_path("k")
    data = bytearray(path.read_bytes())
    if damage == "flip_byte":
        data[-10] ^= 0xFF  # inside the tensor bytes: the header still parses, only the checksum can tell
    elif damage == "edit_metadata":  # same length, so the header still parses: only the checksum can tell
        at = bytes(data).index(b"made by the test")
        data[at : at + 4] = b"MADE"
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="making it again"):
        again, meta = cache.cached("k", make)
    assert make.calls == 2 and meta["n"] == "2"
    _assert_same(again, _tensors())
    assert cache.read_entry(path) is not None  # the entry on disk is whole again


def test_file_sha256_follows_content_not_name(tmp_path):
    a, b, c = tmp_path / "a.gguf", tmp_path / "b.gguf", tmp_path / "c.gguf"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    c.write_bytes(b"same bytez")
    assert cache.file_sha256(a) == cache.file_sha256(b) != cache.file_sha256(c)
    import hashlib

    assert cache.file_sha256(a) == hashlib.sha256(b"same bytes").hexdigest()
