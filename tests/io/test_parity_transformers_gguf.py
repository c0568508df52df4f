"""GGUF import against ``transformers``.

The real SmolLM2-135M-Instruct GGUF file: ``lmforge.load`` alone (weights, tokenizer, chat template) against
``transformers`` loading the same file with ``gguf_file=`` — token ids, logits, greedy generation, chat template,
chat replies — and the dequantized-weight cache (hit, corrupt entry made again).

Tiny GGUF files written here from a random ``transformers`` Llama (GQA, untied head, head size != n_embd / n_head)
the way llama.cpp's converter writes them: float32 (oracle: the original model) and Q8_0 (oracle: transformers
loading the same file)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import lmforge
from lmforge.chat import chat_prompt
from lmforge.generate import generate_ids
from lmforge.io import cache

PROMPTS = [
    "The capital of France is",
    "Hello world! It costs $12.50 (about 11 €), see https://example.org/a_b?c=1.",
    "def add(a, b):\n    return a + b\n\n\n# Tabs\tand   spaces",
    "Ünïcödé, 日本語, emoji 🙂 and <|im_start|>user\nHi<|im_end|>",
]

CONVERSATION = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And of Germany?"},
]


@pytest.fixture(scope="module")
def hf_smollm2(smollm2_gguf_path):
    """transformers' tokenizer and model from the same GGUF (~20-40 s, ~1 GB): loaded once for the module."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(smollm2_gguf_path.parent), smollm2_gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    return tokenizer, model


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("lmforge-cache")


@pytest.fixture(scope="module")
def lm(smollm2_gguf_path, cache_root):
    # quantized=False: the dequantized float32 path, the one the cache serves (kept-quantized loads:
    # tests/io/test_quantized_smollm2.py)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cache.CACHE_ENV, str(cache_root))
        return lmforge.load(smollm2_gguf_path, quantized=False)


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_load_gives_model_tokenizer_and_template(lm, hf_smollm2):
    _, hf_model = hf_smollm2
    assert lm.config.n_layer == hf_model.config.num_hidden_layers
    assert lm.config.n_embd == hf_model.config.hidden_size
    assert lm.config.vocab_size == hf_model.config.vocab_size
    assert lm.config.n_kv_head == hf_model.config.num_key_value_heads
    assert lm.model.num_parameters() == sum(p.numel() for p in hf_model.parameters())
    assert lm.tokenizer.chat_template


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
@pytest.mark.parametrize("prompt", PROMPTS)
def test_token_ids_match_transformers(lm, hf_smollm2, prompt):
    hf_tokenizer, _ = hf_smollm2
    ids = lm.tokenizer.encode(prompt)
    assert ids == hf_tokenizer(prompt)["input_ids"]
    assert lm.tokenizer.decode(ids, skip_special_tokens=False) == hf_tokenizer.decode(ids)


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_logits_match_transformers(lm, hf_smollm2):
    hf_tokenizer, hf_model = hf_smollm2
    for prompt in PROMPTS:
        ids = torch.tensor([hf_tokenizer(prompt)["input_ids"]])
        with torch.inference_mode():
            ours = lm.model(ids)
            theirs = hf_model(ids).logits
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max().item() <= 1e-3, prompt


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_greedy_generation_matches_transformers(lm, hf_smollm2):
    hf_tokenizer, hf_model = hf_smollm2
    prompt = "The capital of France is"
    prompt_ids = hf_tokenizer(prompt)["input_ids"]
    with torch.inference_mode():
        out = hf_model.generate(torch.tensor([prompt_ids]), max_new_tokens=10, do_sample=False)
    theirs = out[0, len(prompt_ids):].tolist()
    ours = generate_ids(lm.model, [prompt_ids], max_new_tokens=10, eos_token_ids=lm.eos_token_ids).new_ids[0]
    assert ours == [t for t in theirs if t not in lm.eos_token_ids]
    assert "Paris" in lm.tokenizer.decode(ours)  # the model really answers: not two equally broken models


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_chat_template_matches_apply_chat_template(lm, hf_smollm2):
    hf_tokenizer, _ = hf_smollm2
    for messages in (CONVERSATION, [{"role": "system", "content": "Be terse."}, *CONVERSATION]):
        expected = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        rendered = chat_prompt(lm.tokenizer, messages)
        assert rendered == expected
        assert lm.tokenizer.encode(rendered) == hf_tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert chat_prompt(lm.tokenizer, CONVERSATION, add_generation_prompt=False) == hf_tokenizer.apply_chat_template(
        CONVERSATION, add_generation_prompt=False, tokenize=False
    )


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_chat_reply_matches_transformers_greedy(lm, hf_smollm2):
    hf_tokenizer, hf_model = hf_smollm2
    text = hf_tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    ids = torch.tensor([hf_tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        out = hf_model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=lm.eos_token_ids)
    expected = hf_tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "".join(lm.chat(CONVERSATION, max_new_tokens=12, stream=True)) == expected


def _reload(path, cache_root) -> tuple[lmforge.lm.LM, float]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cache.CACHE_ENV, str(cache_root))
        start = time.perf_counter()
        lm = lmforge.load(path, quantized=False)
        return lm, time.perf_counter() - start


def _same_weights(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_cache_hit_then_corrupt_entry_is_remade(lm, smollm2_gguf_path, cache_root, capsys):
    entries = list((cache_root / "gguf").glob("*.safetensors"))
    assert len(entries) == 1
    entry = entries[0]
    assert entry.name.startswith(cache.file_sha256(smollm2_gguf_path))  # keyed by the file's content

    again, seconds = _reload(smollm2_gguf_path, cache_root)  # a hit: no dequantization
    assert _same_weights(lm, again)
    with capsys.disabled():
        print(f"\n[gguf] second load of {smollm2_gguf_path.name} (cache hit): {seconds:.1f} s")

    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x55  # one flipped byte deep inside the tensor data
    entry.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="checksum"):
        remade, _ = _reload(smollm2_gguf_path, cache_root)
    assert _same_weights(lm, remade)
    assert cache.read_entry(entry) is not None  # whole again on disk
    # (truncated and emptied entries: tests/io/test_gguf.py::test_damaged_cache_entry_is_made_again)


# --- tiny GGUF files written like llama.cpp's converter does ------------------------------------------------------

def _llama_cpp_permute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    # llama.cpp's convert_hf_to_gguf.py (LlamaModel.permute): interleave the two rotated halves of each head.
    return weight.reshape(n_heads, 2, weight.shape[0] // n_heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape
    )


def _write_llama_gguf(path, model, qtype=None) -> None:
    """A llama-architecture GGUF of a transformers ``LlamaForCausalLM``: metadata, a byte-level vocabulary with two
    control tokens, and every tensor (2-D ones quantized to ``qtype`` when given)."""
    from gguf import GGUFWriter
    from gguf.quants import quantize
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    c = model.config
    spelling = bytes_to_unicode()
    tokens = [spelling[b] for b in range(256)] + ["<s>", "</s>"] + [f"<extra_{i}>" for i in range(c.vocab_size - 258)]
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_key_length(c.head_dim)
    w.add_rope_dimension_count(c.head_dim)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([1] * 256 + [3, 3] + [1] * (len(tokens) - 258))
    w.add_token_merges([])
    w.add_bos_token_id(256)
    w.add_eos_token_id(257)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}

    def put(name: str, array: np.ndarray) -> None:
        if qtype is not None and array.ndim == 2:
            w.add_tensor(name, quantize(array, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, array)

    put("token_embd.weight", sd["model.embed_tokens.weight"])
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


ROPE_THETA = 5000.0


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=24, rope_theta=ROPE_THETA, rms_norm_eps=1e-6, tie_word_embeddings=False,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()


def test_float32_gguf_equals_the_model_it_was_written_from(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    _write_llama_gguf(tmp_path / "tiny.gguf", tiny_llama)
    lm = lmforge.load(tmp_path / "tiny.gguf")
    c = tiny_llama.config
    assert (lm.config.n_kv_head, lm.config.head_dim, lm.config.tie_embeddings) == (2, 24, False)
    assert lm.config.rope_theta == ROPE_THETA and lm.eos_token_ids == [257]
    ids = torch.randint(0, c.vocab_size, (2, 17), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert (lm.model(ids) - tiny_llama(ids).logits).abs().max().item() <= 1e-5


def test_q8_0_gguf_matches_transformers_on_the_same_file(tiny_llama, tmp_path, monkeypatch):
    from gguf import GGMLQuantizationType
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    _write_llama_gguf(tmp_path / "q8.gguf", tiny_llama, GGMLQuantizationType.Q8_0)
    theirs = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="q8.gguf", dtype=torch.float32).eval()
    ours = lmforge.load(tmp_path / "q8.gguf").model
    ids = torch.randint(0, 320, (2, 17), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert (ours(ids) - theirs(ids).logits).abs().max().item() <= 1e-5
        # and the 8-bit weights really are an approximation of the original ones
        assert 0 < (ours(ids) - tiny_llama(ids).logits).abs().max().item() < 0.1
