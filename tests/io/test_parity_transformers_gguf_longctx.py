"""Llama-2-style GGUF files end to end, and the long-context RoPE metadata of GGUF files, against ``transformers``.

Tiny files are written here the way llama.cpp's converter writes them: a random ``transformers`` Llama (q/k rows
permuted), a SentencePiece vocabulary (``tokenizer.ggml.model = "llama"``: scores, byte tokens, no merges), tensors
in F32, F16, Q8_0 or Q4_0, and the RoPE scaling as llama.cpp stores it: ``llama.rope.scaling.*`` metadata (linear,
yarn) or, for Llama 3.1's "llama3" schedule, a ``rope_freqs.weight`` tensor of per-frequency divisors.

Oracles: ``transformers`` loading the same file (``gguf_file=``) for tokenizer, logits and greedy generation. For
scaled files: the ``transformers`` model the file was written from (F32), or ``transformers`` loading the same
quantized file with the scaling passed in — its GGUF loader ignores ``llama.rope.scaling.*`` and ``rope_freqs``
(it reads RoPE scaling metadata only for gpt-oss), so on its own it would run such a file unscaled.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lmforge
from lmforge.errors import ConfigError
from lmforge.generate import generate_ids
from lmforge.io import cache
from lmforge.io.gguf import gguf_config_kwargs, open_gguf, rope_scaling_from_freq_factors
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.nn.positions import check_rope_scaling, rope_frequencies
from tests.io.test_parity_transformers_gguf import _llama_cpp_permute

pytestmark = pytest.mark.xdist_group("gguf_longctx")

THETA = 10000.0
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
LETTERS = "etaoinshrdlu"
# unk, bos, eos, the 256 bytes, then pieces: "▁" + letter, letter pairs (SentencePiece order: best score first)
TOKENS = (["<unk>", "<s>", "</s>"] + BYTE_TOKENS + ["▁"] + [f"▁{a}" for a in LETTERS]
          + [a + b for a in LETTERS for b in LETTERS] + list(LETTERS))
VOCAB = len(TOKENS)
TEXTS = ["the rain in spain", "  hello\tthere, 123!", "naïve café ☕"]

# name → (max_position_embeddings, HF rope_parameters, how llama.cpp's converter stores it). head_dim 16 with
# theta 10000: llama3 with original 64 has kept, blended and slowed rotations.
ROPE_CASES = {
    "linear": (128, {"rope_type": "linear", "factor": 4.0}, "metadata"),
    # llama.cpp's defaults: a factor without a type is linear; older files name it rope.scale_linear
    "linear-untyped": (128, {"rope_type": "linear", "factor": 4.0}, "untyped"),
    "linear-legacy": (128, {"rope_type": "linear", "factor": 4.0}, "legacy"),
    "yarn": (128, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}, "metadata"),
    "yarn-betas": (128, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32,
                         "beta_fast": 16.0, "beta_slow": 2.0}, "metadata"),
    "llama3": (128, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 64}, "rope_freqs"),
}


def llama3_divisors(head_dim: int, theta: float, factor: float, low: float, high: float, original: int
                    ) -> np.ndarray:
    """What llama.cpp's converter writes as ``rope_freqs.weight`` for a llama3 ``rope_scaling``: per rotation,
    1 (wavelength shorter than original/high), ``factor`` (longer than original/low), or the blend between."""
    out = []
    for i in range(0, head_dim, 2):
        wavelength = 2 * math.pi * theta ** (i / head_dim)
        if wavelength < original / high:
            out.append(1.0)
        elif wavelength > original / low:
            out.append(factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def hf_llama(max_positions: int = 128, rope: dict | None = None, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, tie_word_embeddings=False, initializer_range=0.1,
        max_position_embeddings=max_positions, rope_parameters={**(rope or {"rope_type": "default"}),
                                                                "rope_theta": THETA},
        bos_token_id=1, eos_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


def write_llama2_gguf(path, model, qtype=None, *, metadata: dict | None = None, rope_freqs=None) -> None:
    """A Llama-2-style GGUF of ``model``: SentencePiece vocabulary, llama.cpp's q/k row order, 2-D tensors in
    ``qtype`` (default F32), plus extra ``llama.*`` ``metadata`` and an optional ``rope_freqs.weight``."""
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    c = model.config
    w = GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama2")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(c.head_dim)
    w.add_rope_freq_base(THETA)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    for key, value in (metadata or {}).items():
        if isinstance(value, str):
            w.add_string(f"llama.{key}", value)
        elif isinstance(value, int):
            w.add_uint32(f"llama.{key}", value)
        else:
            w.add_float32(f"llama.{key}", value)
    w.add_tokenizer_model("llama")
    w.add_token_list(TOKENS)
    w.add_token_scores([0.0] * 259 + [-float(k) for k in range(VOCAB - 259)])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (VOCAB - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}

    def put(name: str, array: np.ndarray) -> None:
        if qtype is None or array.ndim == 1:
            w.add_tensor(name, array)
        elif qtype == GGMLQuantizationType.F16:
            w.add_tensor(name, array.astype(np.float16))
        else:
            w.add_tensor(name, quantize(array, qtype), raw_dtype=qtype)

    put("token_embd.weight", sd["model.embed_tokens.weight"])
    if rope_freqs is not None:
        put("rope_freqs.weight", rope_freqs)
    put("output_norm.weight", sd["model.norm.weight"])
    put("output.weight", sd["lm_head.weight"])
    for i in range(c.num_hidden_layers):
        hf = f"model.layers.{i}."
        put(f"blk.{i}.attn_norm.weight", sd[hf + "input_layernorm.weight"])
        put(f"blk.{i}.attn_q.weight", _llama_cpp_permute(sd[hf + "self_attn.q_proj.weight"], c.num_attention_heads))
        put(f"blk.{i}.attn_k.weight", _llama_cpp_permute(sd[hf + "self_attn.k_proj.weight"], c.num_key_value_heads))
        put(f"blk.{i}.attn_v.weight", sd[hf + "self_attn.v_proj.weight"])
        put(f"blk.{i}.attn_output.weight", sd[hf + "self_attn.o_proj.weight"])
        put(f"blk.{i}.ffn_norm.weight", sd[hf + "post_attention_layernorm.weight"])
        put(f"blk.{i}.ffn_gate.weight", sd[hf + "mlp.gate_proj.weight"])
        put(f"blk.{i}.ffn_up.weight", sd[hf + "mlp.up_proj.weight"])
        put(f"blk.{i}.ffn_down.weight", sd[hf + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_scaled(path, name: str, model, qtype=None) -> None:
    """``model`` (built with ``ROPE_CASES[name]``) written with its scaling where llama.cpp's converter puts it."""
    _, rope, where = ROPE_CASES[name]
    if where == "rope_freqs":
        divisors = llama3_divisors(16, THETA, rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"],
                                   rope["original_max_position_embeddings"])
        write_llama2_gguf(path, model, qtype, rope_freqs=divisors)
        return
    if where == "untyped":
        write_llama2_gguf(path, model, qtype, metadata={"rope.scaling.factor": rope["factor"]})
        return
    if where == "legacy":
        write_llama2_gguf(path, model, qtype, metadata={"rope.scale_linear": rope["factor"]})
        return
    meta: dict = {"rope.scaling.type": rope["rope_type"], "rope.scaling.factor": rope["factor"]}
    if "original_max_position_embeddings" in rope:
        meta["rope.scaling.original_context_length"] = rope["original_max_position_embeddings"]
    for ours, theirs in (("beta_fast", "yarn_beta_fast"), ("beta_slow", "yarn_beta_slow")):
        if ours in rope:
            meta[f"rope.scaling.{theirs}"] = rope[ours]
    write_llama2_gguf(path, model, qtype, metadata=meta)


def _ids(length: int, seed: int) -> torch.Tensor:
    return torch.randint(3, VOCAB, (2, length), generator=torch.Generator().manual_seed(seed))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))


QTYPES = ["F32", "F16", "Q8_0", "Q4_0"]


@pytest.mark.parametrize("qtype", QTYPES)
def test_llama2_style_gguf_matches_transformers_end_to_end(qtype, tmp_path, cache_env):
    from gguf import GGMLQuantizationType
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = hf_llama()
    write_llama2_gguf(tmp_path / "m.gguf", source, None if qtype == "F32" else GGMLQuantizationType[qtype])
    lm = lmforge.load(tmp_path / "m.gguf", quantized=False)  # the dequantized path, which the cache serves
    theirs = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="m.gguf", dtype=torch.float32).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="m.gguf")
    assert [lm.tokenizer.encode(t) for t in TEXTS] == [hf_tokenizer(t)["input_ids"] for t in TEXTS]
    assert lm.config.rope_scaling is None and lm.eos_token_ids == [2]
    assert [e.source for e in cache.list_entries()] == [str((tmp_path / "m.gguf").resolve())]  # for `cache list`
    ids = _ids(40, 1)
    with torch.inference_mode():
        assert _max_diff(lm.model(ids), theirs(ids).logits) <= 1e-4
    prompt = hf_tokenizer(TEXTS[0])["input_ids"]
    with torch.inference_mode():
        out = theirs.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, eos_token_id=None,
                              pad_token_id=0)
    expected = out[0, len(prompt):].tolist()
    got = generate_ids(lm.model, [prompt], max_new_tokens=16, eos_token_ids=[]).new_ids[0]
    assert got == expected


@pytest.mark.parametrize("name", list(ROPE_CASES))
def test_scaled_gguf_equals_the_model_it_was_written_from(name, tmp_path, cache_env):
    max_positions, rope, _ = ROPE_CASES[name]
    source = hf_llama(max_positions, rope, seed=3)
    write_scaled(tmp_path / "s.gguf", name, source)
    lm = lmforge.load(tmp_path / "s.gguf")
    assert lm.config.rope_scaling["rope_type"] == rope["rope_type"]
    ids = _ids(100, 4)  # past every original context above
    with torch.inference_mode():
        ours, reference = lm.model(ids), source(ids).logits
        assert _max_diff(ours, reference) <= 1e-4
        # the scaling is what makes them agree: the same weights without it are far off
        plain = GPT.from_state_dict(GPTConfig(**{**lm.config.to_dict(), "rope_scaling": None}), lm.model.state_dict())
        assert _max_diff(plain.eval()(ids), reference) > 100 * _max_diff(ours, reference)


@pytest.mark.parametrize("name", ["linear", "yarn", "llama3"])
def test_quantized_scaled_gguf_matches_transformers_given_the_scaling(name, tmp_path, cache_env):
    from gguf import GGMLQuantizationType
    from transformers import AutoModelForCausalLM

    max_positions, rope, _ = ROPE_CASES[name]
    source = hf_llama(max_positions, rope, seed=5)
    write_scaled(tmp_path / "q.gguf", name, source, GGMLQuantizationType.Q8_0)
    lm = lmforge.load(tmp_path / "q.gguf")
    theirs = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="q.gguf", dtype=torch.float32,
                                                  rope_parameters={**rope, "rope_theta": THETA}).eval()
    ids = _ids(100, 6)
    with torch.inference_mode():
        assert _max_diff(lm.model(ids), theirs(ids).logits) <= 1e-4
        out = theirs.generate(ids[:1, :70], max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    got = generate_ids(lm.model, [ids[0, :70].tolist()], max_new_tokens=12, eos_token_ids=[]).new_ids[0]
    assert got == out[0, 70:].tolist()


@pytest.mark.parametrize(("head_dim", "theta", "factor", "low", "high", "original"), [
    (128, 500000.0, 8.0, 1.0, 4.0, 8192),  # Llama 3.1 / 3.2 (3.2 uses factor 32)
    (128, 500000.0, 32.0, 1.0, 4.0, 8192),
    (64, 10000.0, 4.0, 2.0, 8.0, 512),
    (16, 10000.0, 8.0, 1.0, 4.0, 64),
    (16, 10000.0, 8.0, 1.0, 1.5, 64),  # at most one blended rotation
])
def test_rope_freqs_read_back_as_the_llama3_schedule_transformers_computes(
        head_dim, theta, factor, low, high, original, tmp_path):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = {"rope_type": "llama3", "factor": factor, "low_freq_factor": low, "high_freq_factor": high,
            "original_max_position_embeddings": original}
    model = hf_llama()
    divisors = llama3_divisors(head_dim, theta, factor, low, high, original)
    write_llama2_gguf(tmp_path / "f.gguf", model, rope_freqs=divisors)
    gf = open_gguf(tmp_path / "f.gguf")
    scaling = rope_scaling_from_freq_factors(gf, gf.tensors["rope_freqs.weight"], head_dim, theta)
    ours, _ = rope_frequencies(head_dim, theta, check_rope_scaling(scaling, 131072))
    config = LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, head_dim=head_dim,
                         max_position_embeddings=131072, rope_parameters={**rope, "rope_theta": theta})
    theirs, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    torch.testing.assert_close(ours.double(), theirs.double(), rtol=1e-5, atol=0)


@pytest.mark.parametrize(("metadata", "rope_freqs", "match"), [
    ({"rope.scaling.type": "longrope", "rope.scaling.factor": 4.0}, None, "llama.rope.scaling.type"),
    ({"rope.scaling.type": "yarn", "rope.scaling.factor": 4.0, "rope.scaling.yarn_log_multiplier": 0.1}, None,
     "llama.rope.scaling.yarn_log_multiplier"),
    ({"rope.scaling.type": "linear", "rope.scaling.factor": 2.0, "rope.scaling.original_context_length": 64}, None,
     "llama.rope.scaling.original_context_length"),
    ({"attention.sliding_window": 32}, None, "llama.attention.sliding_window"),
    ({}, np.array([1, 3, 1, 3, 1, 3, 1, 3], dtype=np.float32), "rope_freqs.weight"),
    ({}, np.array([1, 2, 3], dtype=np.float32), "rope_freqs.weight"),
    ({"rope.scaling.type": "linear", "rope.scaling.factor": 2.0}, np.full(8, 2, dtype=np.float32),
     "rope_freqs.weight"),
])
def test_unsupported_rope_metadata_names_the_key(metadata, rope_freqs, match, tmp_path):
    write_llama2_gguf(tmp_path / "bad.gguf", hf_llama(), metadata=metadata, rope_freqs=rope_freqs)
    with pytest.raises(ConfigError, match=match.replace(".", r"\.")):
        gguf_config_kwargs(open_gguf(tmp_path / "bad.gguf"))


def test_constant_rope_freqs_is_linear_scaling(tmp_path):
    write_llama2_gguf(tmp_path / "c.gguf", hf_llama(), rope_freqs=np.full(8, 3.0, dtype=np.float32))
    assert gguf_config_kwargs(open_gguf(tmp_path / "c.gguf"))["rope_scaling"] == {"rope_type": "linear",
                                                                                    "factor": 3.0}


def test_type_none_is_never_scaled_whatever_the_factor(tmp_path, cache_env):
    source = hf_llama(seed=8)
    write_llama2_gguf(tmp_path / "n.gguf", source, metadata={"rope.scaling.type": "none", "rope.scaling.factor": 4.0,
                                                            "rope.scaling.original_context_length": 32})
    lm = lmforge.load(tmp_path / "n.gguf")
    assert lm.config.rope_scaling is None
    ids = _ids(100, 9)
    with torch.inference_mode():
        assert _max_diff(lm.model(ids), source(ids).logits) <= 1e-4
