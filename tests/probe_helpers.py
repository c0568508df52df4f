"""Tiny models for the inspection tests (probe, plot, ``lmforge inspect``, ``lmforge ui``): a Llama-style GPT with
a real byte-level BPE tokenizer, and an HF BERT with an MLM head, both with sharp (non-uniform) attention."""

from __future__ import annotations

import json
from pathlib import Path

import torch

QK_STD = 0.4  # query/key weights rescaled from std 0.02: heads attend sharply, so wrong weights show


def make_gpt_folder(folder: Path, seed: int = 0) -> Path:
    """An lmforge model folder: a random 2-layer, 4-head Llama-style GPT (GQA, RoPE) + a 300-token byte-level BPE
    trained by HF tokenizers on the built-in corpus; block_size 64."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from lmforge.data.corpus import builtin_text
    from lmforge.io import save_model
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.tokenizers import Tokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator([builtin_text()[:50_000]], trainer)
    tokenizer = Tokenizer.from_hf_json(json.loads(hf.to_str()))
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=300, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, norm="rms",
                          mlp="swiglu", pos="rope", bias=False))
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)  # tied with wte: sharper next-token distributions
        for block in model.blocks:
            qkv = block.attn.qkv.weight
            qk_rows = (4 + 2) * 8  # query heads + key heads, head_dim 8
            qkv[:qk_rows].mul_(QK_STD / qkv[:qk_rows].std())
    save_model(folder, model, tokenizer, generation_config={"eos_token_id": []})
    return folder


def make_bert_folder(folder: Path, seed: int = 2) -> Path:
    """An HF BertForMaskedLM folder (2 layers, 4 heads, 32 wide) with a 101-word vocab.txt (``w0``..``w95``)."""
    import transformers as tf

    torch.manual_seed(seed)
    cfg = tf.BertConfig(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64)
    model = tf.BertForMaskedLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("query.weight", "key.weight")):
                p.mul_(QK_STD / p.std())
    model.save_pretrained(folder)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(96)]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return folder
