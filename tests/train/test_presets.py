"""Every named preset builds the model its table row describes: the shape fields equal the published shapes
(GPT-2 small/medium, SmolLM2-135M, BERT-base), and the parameter count equals transformers' model of the same
config (built on the meta device: no memory, no time)."""

from __future__ import annotations

import pytest
import torch

from lmforge.train.presets import PRESETS, model_config

# name -> (n_layer, n_embd, n_head, n_kv_head, block_size, ffn_hidden), from the table in docs/architecture.md and
# the published configs (GPT-2's, SmolLM2-135M's config.json, BERT-base's)
SHAPES = {
    "tiny": (4, 128, 4, 4, 128, 512),
    "tiny-llama": (4, 128, 4, 2, 128, None),
    "gpt2-small": (12, 768, 12, 12, 1024, 3072),
    "gpt2-medium": (24, 1024, 16, 16, 1024, 4096),
    "llama-small": (12, 768, 12, 4, 1024, None),
    "smollm2-135m": (30, 576, 9, 3, 8192, 1536),
    "bert-tiny": (2, 128, 2, 2, 512, 512),
    "bert-mini": (4, 256, 4, 4, 512, 1024),
    "bert-base": (12, 768, 12, 12, 512, 3072),
}
LLAMA = {"tiny-llama", "llama-small", "smollm2-135m"}
# parameter counts published for the real models (GPT-2 with its 50,257-token vocabulary, tied head)
PUBLISHED = {("gpt2-small", 50257): 124_439_808, ("gpt2-medium", 50257): 354_823_168,
             ("smollm2-135m", 49152): 134_515_008}


def test_the_table_names_every_preset():
    assert set(SHAPES) == set(PRESETS)


@pytest.mark.parametrize("name", list(SHAPES))
def test_preset_builds_the_model_of_its_table_row(name):
    from transformers import AutoModel, AutoModelForCausalLM
    from transformers import BertConfig as HFBertConfig

    family = PRESETS[name].family
    vocab = {"gpt2-small": 50257, "gpt2-medium": 50257, "smollm2-135m": 49152}.get(name, 512 if family == "gpt"
                                                                                     else 30522)
    cfg = model_config(name, vocab_size=vocab)
    n_layer, n_embd, n_head, n_kv_head, block_size, ffn_hidden = SHAPES[name]
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.block_size) == (n_layer, n_embd, n_head, block_size)
    if ffn_hidden is not None:
        assert cfg.ffn_hidden == ffn_hidden
    if family == "gpt":
        assert cfg.n_kv_head == n_kv_head
        llama = (cfg.norm, cfg.mlp, cfg.pos, cfg.bias) == ("rms", "swiglu", "rope", False)
        gpt2 = (cfg.norm, cfg.pos, cfg.bias) == ("layer", "learned", True) and cfg.mlp.startswith("gelu")
        assert llama if name in LLAMA else gpt2
        from lmforge.io.hf_gpt import config_to_hf
        from lmforge.models.gpt import GPT

        with torch.device("meta"):
            ours = GPT(cfg)
            hf_cfg = config_to_hf(cfg)
            theirs = AutoModelForCausalLM.from_config(
                __import__("transformers").AutoConfig.for_model(hf_cfg.pop("model_type"), **hf_cfg))
    else:
        from lmforge.io.hf_bert import config_to_hf
        from lmforge.models.bert import Bert

        with torch.device("meta"):
            ours = Bert(cfg)
            theirs = AutoModel.from_config(HFBertConfig(**config_to_hf(cfg)))
    count = ours.num_parameters()
    assert count == sum(p.numel() for p in theirs.parameters())
    if (name, vocab) in PUBLISHED:
        assert count == PUBLISHED[(name, vocab)]
