"""Quantize → save → load round trips (identical bytes), GGUF load → export (identical blocks), export to GGUF
read back by ``transformers`` (``gguf_file=``, the outside reference) and by lmforge, and the clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lmforge
from lmforge.errors import ConfigError, FormatError
from lmforge.io import cache
from lmforge.io.gguf import open_gguf
from lmforge.io.gguf_export import export_gguf
from lmforge.io.lmforge_format import save_model
from lmforge.io.quantize import quantize_model
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.nn.quantized import QuantizedLinear
from tests.test_generate import make_tiny_text_model

# Max |logit difference| against the float model each GGUF type must stay within (measured on these random
# models: f16 ~3e-3, q8_0 ~0.08, q4_0 ~0.08 — scaled head weights make logits large); a wrong RoPE row order,
# a transposed matrix or a swapped Q/K give differences of order 1 and above.
TOLERANCE = {"f32": 1e-5, "f16": 0.02, "q8_0": 0.3, "q4_0": 0.6}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An lmforge folder: a 2-layer Llama-shaped GPT (GQA, RoPE) with a real byte-level BPE tokenizer."""
    return lmforge.load(make_tiny_text_model(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def tiny_gpt2(tiny):
    torch.manual_seed(0)  # block_size 1024: transformers reads gpt2.context_length as n_ctx, keeps n_positions=1024
    return GPT(GPTConfig(vocab_size=400, block_size=1024, n_layer=2, n_head=4, n_embd=64)).eval()


@pytest.mark.parametrize("qtype,group", [("int8", None), ("int4", 32), ("q8_0", None), ("q4_0", None),
                                         ("q4_1", None)])
def test_quantize_save_load_gives_identical_bytes_and_logits(tiny, tmp_path, qtype, group):
    model = GPT.from_state_dict(tiny.config, tiny.model.state_dict()).eval()
    quantize_model(model, qtype, group)
    save_model(tmp_path / "q", model, tiny.tokenizer, tiny.generation_config)
    back = lmforge.load(tmp_path / "q")
    assert isinstance(back.model.blocks[0].attn.qkv, QuantizedLinear)
    assert back.model.lm_head.q is back.model.wte.q  # still tied: one copy of the bytes
    ours, theirs = model.state_dict(), back.model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    ids = torch.randint(0, 400, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(model(ids), back.model(ids))
    assert back.generate("Lists are", max_new_tokens=8) == lmforge.generate.generate(
        lmforge.LM(model, tiny.tokenizer, generation_config=tiny.generation_config), "Lists are",
        max_new_tokens=8)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("qtype", ["f32", "f16", "q8_0", "q4_0"])
def test_export_loads_in_transformers_and_lmforge(tiny, tiny_gpt2, tmp_path, arch, qtype):
    from transformers import AutoModelForCausalLM

    model = tiny.model if arch == "llama" else tiny_gpt2
    path = export_gguf(tmp_path / "m.gguf", model, tiny.tokenizer, tiny.generation_config, qtype=qtype)
    theirs = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="m.gguf", dtype=torch.float32).eval()
    ids = torch.randint(0, 400, (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = model(ids)
        hf = theirs(ids).logits
    assert (hf - want).abs().max().item() <= TOLERANCE[qtype]
    if arch == "llama":  # lmforge imports llama GGUF files (gpt2 GGUF import: not yet)
        back = lmforge.load(path)
        with torch.inference_mode():
            torch.testing.assert_close(back.model(ids), hf, rtol=0, atol=1e-4)
        assert back.tokenizer.encode("Hello there, 123 worlds!") == tiny.tokenizer.encode("Hello there, 123 worlds!")
        if qtype == "f32":
            assert back.generate("Lists are", max_new_tokens=10) == tiny.generate("Lists are", max_new_tokens=10)


def test_gguf_load_then_export_keeps_the_blocks_byte_for_byte(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    first = export_gguf(tmp_path / "a.gguf", tiny.model, tiny.tokenizer, tiny.generation_config, qtype="q4_0")
    lm = lmforge.load(first)  # kept quantized (and no cache entry made)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))
    second = export_gguf(tmp_path / "b.gguf", lm.model, lm.tokenizer, lm.generation_config, qtype="q4_0")
    a, b = open_gguf(first).tensors, open_gguf(second).tensors
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].tensor_type == b[name].tensor_type
        np.testing.assert_array_equal(np.asarray(a[name].data), np.asarray(b[name].data), err_msg=name)


def test_unsupported_gguf_type_names_itself_and_the_tensor(tiny, tmp_path):
    from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
    from gguf.quants import quantize

    src = export_gguf(tmp_path / "a.gguf", tiny.model, tiny.tokenizer, qtype="f32")
    reader = GGUFReader(src)
    w = GGUFWriter(str(tmp_path / "q5.gguf"), "llama")
    for field in reader.fields.values():
        if not field.name.startswith("GGUF.") and field.name != "general.architecture":
            w.add_key_value(field.name, field.contents(), field.types[0],
                            field.types[-1] if field.types[0] == 9 else None)
    for t in reader.tensors:
        data = np.asarray(t.data).reshape([int(d) for d in reversed(t.shape)])
        if t.name == "blk.1.ffn_down.weight":
            w.add_tensor(t.name, quantize(data, GGMLQuantizationType.Q5_0), raw_dtype=GGMLQuantizationType.Q5_0)
        else:
            w.add_tensor(t.name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(FormatError, match=r"'blk\.1\.ffn_down\.weight' is Q5_0.*quantized=False"):
        lmforge.load(tmp_path / "q5.gguf")
    assert lmforge.load(tmp_path / "q5.gguf", quantized=False, cache=False).model is not None


def test_export_refuses_shapes_without_a_gguf_architecture(tmp_path):
    moe = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, n_embd=32, norm="rms", mlp="swiglu",
                        pos="rope", bias=False, n_expert=2))
    with pytest.raises(ConfigError, match="n_expert=0"):
        export_gguf(tmp_path / "x.gguf", moe)
    with pytest.raises(ConfigError, match="not one of"):
        export_gguf(tmp_path / "x.gguf", moe, qtype="q5_k")
    assert not (tmp_path / "x.gguf").exists()


def test_k_quant_file_loads_packed_and_equals_the_dequantized_load(tmp_path):
    """A GGUF with Q4_K and Q6_K tensors (random blocks; gguf cannot quantize K-quants) and a fused Q|K|V whose
    parts differ in type (as in Q4_K_M files): kept-quantized logits equal the quantized=False path's."""
    from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter

    from lmforge.nn.quantized import QuantizedEmbedding
    from tests.nn.test_quantized import random_blocks

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=64, n_layer=1, n_head=4, n_kv_head=2, n_embd=256,
                          ffn_hidden=256, norm="rms", mlp="swiglu", pos="rope", bias=False)).eval()
    from lmforge.tokenizers import Tokenizer
    from lmforge.tokenizers.bpe import bytes_to_unicode

    tokenizer = Tokenizer.from_byte_level_bpe({ch: i for i, ch in bytes_to_unicode().items()}, [])
    src = export_gguf(tmp_path / "f32.gguf", model, tokenizer, qtype="f32")
    kinds = {"attn_q": "q4_k", "attn_k": "q4_k", "attn_v": "q6_k", "attn_output": "q4_k", "ffn_gate": "q4_k",
             "ffn_up": "q4_k", "ffn_down": "q6_k", "token_embd": "q6_k"}
    reader = GGUFReader(src)
    w = GGUFWriter(str(tmp_path / "k.gguf"), "llama")
    for field in reader.fields.values():
        if not field.name.startswith("GGUF.") and field.name != "general.architecture":
            w.add_key_value(field.name, field.contents(), field.types[0],
                            field.types[-1] if field.types[0] == 9 else None)
    for i, t in enumerate(reader.tensors):
        kind = next((k for part, k in kinds.items() if f"{part}." in t.name), None)
        data = np.asarray(t.data).reshape([int(d) for d in reversed(t.shape)])
        if kind is None:
            w.add_tensor(t.name, data)
        else:
            raw = random_blocks(kind, data.shape[0], data.shape[1] // 256, seed=i)
            w.add_tensor(t.name, raw, raw_dtype=GGMLQuantizationType[kind.upper()])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    packed = lmforge.load(tmp_path / "k.gguf")
    block = packed.model.blocks[0]
    assert isinstance(packed.model.wte, QuantizedEmbedding) and packed.model.wte.qtype == "q6_k"
    assert isinstance(block.attn.qkv, torch.nn.Linear)  # Q4_K + Q6_K parts: dequantized
    assert (block.attn.proj.qtype, block.mlp.gate_up.qtype, block.mlp.proj.qtype) == ("q4_k", "q4_k", "q6_k")
    dense = lmforge.load(tmp_path / "k.gguf", quantized=False, cache=False)
    ids = torch.randint(0, 256, (1, 11), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for rows in (ids, ids[:, :3]):  # dequantize + GEMM path and packed-kernel path
            want = dense.model(rows)
            torch.testing.assert_close(packed.model(rows), want, rtol=0, atol=1e-4 * want.abs().max().item())
