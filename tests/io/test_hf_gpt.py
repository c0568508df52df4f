"""HF folder import: sharded checkpoints, and every kind of bad folder → an LmforgeError naming the problem."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import lmforge
from lmforge.errors import ConfigError, FormatError
from lmforge.io import save_hf
from lmforge.models.gpt import GPT, GPTConfig


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    ref = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                       hidden_size=32, intermediate_size=48, vocab_size=64,
                                       max_position_embeddings=32)).eval()
    folder = tmp_path_factory.mktemp("llama")
    ref.save_pretrained(folder)
    return folder, ref


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_sharded_checkpoint_loads(llama_folder, tmp_path):
    folder, ref = llama_folder
    ref.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    lm = lmforge.load(tmp_path)
    ids = torch.randint(0, 64, (1, 9))
    with torch.no_grad():
        assert (lm.model(ids) - ref(ids).logits).abs().max().item() <= 1e-4


def test_unknown_architecture(llama_folder, tmp_path):
    folder = _copy(llama_folder[0], tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "falcon"}))
    with pytest.raises(ConfigError, match=r"config\.json: model_type 'falcon' is not supported"):
        lmforge.load(folder)
    rope = {"rope_type": "longrope", "short_factor": [1.0], "long_factor": [4.0]}
    (folder / "config.json").write_text(json.dumps({**cfg, "rope_parameters": rope}))
    with pytest.raises(ConfigError, match=r"config\.json: .*rope type 'longrope' is not supported"):
        lmforge.load(folder)


def test_missing_tensor(llama_folder, tmp_path):
    folder = _copy(llama_folder[0], tmp_path / "m")
    weights = load_file(folder / "model.safetensors")
    del weights["model.layers.1.self_attn.k_proj.weight"]
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(FormatError, match=r"'model\.layers\.1\.self_attn\.k_proj\.weight' is missing"):
        lmforge.load(folder)


def test_mis_shaped_tensor(llama_folder, tmp_path):
    folder = _copy(llama_folder[0], tmp_path / "m")
    weights = load_file(folder / "model.safetensors")
    weights["model.layers.0.mlp.down_proj.weight"] = torch.zeros(32, 40)
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(FormatError, match=r"model\.layers\.0\.mlp\.down_proj\.weight.*\(32, 40\).*\(32, 48\)"):
        lmforge.load(folder)


def test_truncated_safetensors(llama_folder, tmp_path):
    folder = _copy(llama_folder[0], tmp_path / "m")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"model\.safetensors: not a readable safetensors file"):
        lmforge.load(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FormatError, match="no weights found"):
        lmforge.load(folder)


def test_export_refuses_configs_hf_cannot_hold(tmp_path):
    model = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=16, pos="rope"))
    with pytest.raises(ConfigError, match="no Hugging Face architecture"):
        save_hf(tmp_path, model)
    assert not (tmp_path / "config.json").exists()


def test_export_carries_tokenizer_and_chat_template_to_transformers(tmp_path, smollm2_gguf_path):
    """SmolLM2's real tokenizer (from its GGUF file) on a small random model: transformers' AutoTokenizer reads
    the exported folder with the same ids, special tokens and chat rendering; lmforge.load gets them back too."""
    from transformers import AutoTokenizer

    from lmforge.chat import chat_prompt
    from lmforge.io.gguf import gguf_tokenizer, open_gguf

    tokenizer = gguf_tokenizer(open_gguf(smollm2_gguf_path))
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16,
                          norm="rms", mlp="swiglu", pos="rope", bias=False))
    save_hf(tmp_path, model, tokenizer)
    hf_tok = AutoTokenizer.from_pretrained(tmp_path)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Perú?"}]
    assert hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == chat_prompt(
        tokenizer, messages)
    text = "Hello — wörld 123 <|im_end|>"
    assert hf_tok(text)["input_ids"] == tokenizer.encode(text)
    assert hf_tok.eos_token == tokenizer.eos_token
    back = lmforge.load(tmp_path).tokenizer
    assert back.chat_template == tokenizer.chat_template and back.eos_token_id == tokenizer.eos_token_id
