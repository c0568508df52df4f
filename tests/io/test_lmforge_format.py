"""lmforge model folders: save → load round trip (logits, tokenizer, generation ids), atomic writes, errors."""

from __future__ import annotations

import json

import pytest
import torch

import lmforge
from lmforge.errors import ConfigError, FormatError
from lmforge.io import detect_format, save_model
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train.presets import model_config


@pytest.mark.parametrize("preset", ["tiny", "tiny-llama"])
def test_round_trip_gives_identical_logits(preset, tmp_path):
    torch.manual_seed(0)
    model = GPT(model_config(preset)).eval()
    save_model(tmp_path, model, generation_config={"eos_token_id": [7]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lmforge.json", "model.safetensors"]  # no temp files left
    meta = json.loads((tmp_path / "lmforge.json").read_text())
    assert meta["arch"] == "gpt" and meta["config"]["n_layer"] == 4
    lm = lmforge.load(tmp_path)
    assert lm.config == model.config and lm.tokenizer is None and lm.eos_token_ids == [7]
    ids = torch.randint(0, 512, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids), model(ids), rtol=0, atol=0)
    if model.config.tie_embeddings:
        assert lm.model.lm_head.weight is lm.model.wte.weight
        from safetensors import safe_open

        with safe_open(tmp_path / "model.safetensors", "pt") as f:
            assert "lm_head.weight" not in f.keys()  # stored once


def test_tokenizer_travels_with_the_model(tmp_path, gpt2_tiktoken_path):
    from lmforge.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(gpt2_tiktoken_path)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    save_model(tmp_path, model, tokenizer)
    lm = lmforge.load(tmp_path)
    text = "Hello world, ünïcödé!"
    assert lm.tokenizer.encode(text) == tokenizer.encode(text)


def test_bert_row_of_the_architecture_table(tmp_path):
    from lmforge.models.bert import Bert, BertConfig

    torch.manual_seed(0)
    model = Bert(BertConfig(vocab_size=50, n_embd=16, n_layer=1, n_head=2, ffn_hidden=32, block_size=20,
                            head="mlm")).eval()
    save_model(tmp_path, model)
    assert json.loads((tmp_path / "lmforge.json").read_text())["arch"] == "bert"
    lm = lmforge.load(tmp_path)
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids), model(ids))


def test_errors_name_the_file(tmp_path):
    model = GPT(model_config("tiny"))
    save_model(tmp_path / "m", model)
    meta_path = tmp_path / "m" / "lmforge.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "arch": "rnn"}))
    with pytest.raises(ConfigError, match=r"lmforge\.json.*arch 'rnn'"):
        lmforge.load(tmp_path / "m")
    meta_path.write_text(json.dumps({**meta, "config": {**meta["config"], "n_layers": 2}}))
    with pytest.raises(ConfigError, match="unknown GPT config field"):
        lmforge.load(tmp_path / "m")
    meta_path.write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        lmforge.load(tmp_path / "m")
    meta_path.write_text(json.dumps(meta))
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(FormatError, match="model.safetensors"):
        lmforge.load(tmp_path / "m")
    with pytest.raises(FormatError, match="no such file"):
        lmforge.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="not a model folder"):
        detect_format(tmp_path / "empty")
