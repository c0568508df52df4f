"""A tiny peaked language model served on loopback for the serve tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge.io import save_model
from lmforge.models.gpt import GPT, GPTConfig


def make_peaked_model(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Llama-style GPT (block_size 256) with weights scaled up, so next-token distributions are peaked
    (the top two logits are far apart: batched vs single-row rounding cannot flip a choice), plus a 400-token
    byte-level BPE trained on the built-in corpus. End id: ``<|endoftext|>``; ChatML tokens are added so the
    default chat template's markers are single tokens."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from lmforge.data.corpus import builtin_text
    from lmforge.tokenizers import Tokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator([builtin_text()[:100_000]], trainer)
    tokenizer = Tokenizer.from_hf_json(json.loads(hf.to_str()))
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=400, block_size=256, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, norm="rms",
                          mlp="swiglu", pos="rope", bias=False, tie_embeddings=False))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
        model.lm_head.weight.mul_(LOGIT_SCALE)
    save_model(folder, model, tokenizer, generation_config={"eos_token_id": 0})
    return folder


LOGIT_SCALE = 8.0


@pytest.fixture(scope="session")
def peaked_lm(tmp_path_factory):
    return lmforge.load(make_peaked_model(tmp_path_factory.mktemp("peaked")))
