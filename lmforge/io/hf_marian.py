"""Hugging Face MarianMT folders ↔ :class:`lmforge.models.transformer.Transformer`.

MarianMT is the open standard translation architecture: the post-norm encoder–decoder of "Attention Is All You
Need" with sinusoidal positions (sines then cosines), embeddings scaled by sqrt(d_model), one shared embedding table,
and a fixed ``final_logits_bias``. ``load`` reads ``config.json`` + ``model.safetensors`` (or ``pytorch_model.bin``,
``weights_only``); a ``tokenizer.json`` beside them is used when present, otherwise the model is for id-level use
(Marian's SentencePiece ``.spm`` files are not read). ``save_marian`` writes a folder ``MarianMTModel`` opens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from lmforge.errors import ConfigError, FormatError
from lmforge.io.folders import model_folder
from lmforge.io.hf_files import read_hf_weights
from lmforge.io.model_parts import ModelParts
from lmforge.io.tokenizer_files import read_tokenizer_files, write_tokenizer_files
from lmforge.models.transformer import Transformer, TransformerConfig

# Marian activation_function → lmforge mlp
ACTIVATIONS = {"swish": "silu", "silu": "silu", "relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh"}

# Per-layer tensors: Marian name (after "model.encoder.layers.{i}." / "model.decoder.layers.{i}.") → lmforge name
# (after "encoder_blocks.{i}." / "decoder_blocks.{i}."). Entries whose lmforge name is shared (a list of Marian
# names) are concatenated along dim 0 in that order: lmforge fuses q/k/v (self) and k/v (cross) into one matrix.
LAYER_TABLE: dict[str, list[str]] = {
    "attn.qkv": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
    "attn.proj": ["self_attn.out_proj"],
    "norm_attn": ["self_attn_layer_norm"],
    "cross_attn.q": ["encoder_attn.q_proj"],
    "cross_attn.kv": ["encoder_attn.k_proj", "encoder_attn.v_proj"],
    "cross_attn.proj": ["encoder_attn.out_proj"],
    "norm_cross": ["encoder_attn_layer_norm"],
    "mlp.fc": ["fc1"],
    "mlp.proj": ["fc2"],
    "norm_mlp": ["final_layer_norm"],
}


def config_from_marian(hf: dict, where: str) -> TransformerConfig:
    """A :class:`TransformerConfig` from a Marian ``config.json`` dict."""
    def get(key: str) -> Any:
        if key not in hf:
            raise FormatError(f"{where}: missing field {key!r}")
        return hf[key]

    if get("encoder_attention_heads") != get("decoder_attention_heads"):
        raise ConfigError(f"{where}: different encoder/decoder head counts are not supported")
    if get("encoder_ffn_dim") != get("decoder_ffn_dim"):
        raise ConfigError(f"{where}: different encoder/decoder ffn dims are not supported")
    act = hf.get("activation_function", "gelu")
    if act not in ACTIVATIONS:
        raise ConfigError(f"{where}: activation_function {act!r} is not supported ({sorted(ACTIVATIONS)})")
    if hf.get("normalize_before") or hf.get("add_final_layer_norm") or hf.get("normalize_embedding"):
        raise ConfigError(f"{where}: pre-norm / extra layer-norm Marian variants are not supported")
    shared = hf.get("share_encoder_decoder_embeddings", True)
    vocab = get("vocab_size")
    tgt_vocab = vocab if shared else (hf.get("decoder_vocab_size") or vocab)
    pad = get("pad_token_id")
    eos = hf.get("eos_token_id", 0)
    eos = eos[0] if isinstance(eos, list) else eos
    return TransformerConfig(
        vocab_size=tgt_vocab, src_vocab_size=vocab, block_size=get("max_position_embeddings"),
        n_layer=get("decoder_layers"), n_encoder_layer=get("encoder_layers"), n_head=get("decoder_attention_heads"),
        n_embd=get("d_model"), ffn_hidden=get("decoder_ffn_dim"), mlp=ACTIVATIONS[act], norm="layer", norm_eps=1e-5,
        bias=True, dropout=float(hf.get("dropout", 0.1)), tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        share_embeddings=shared, prenorm=False, scale_embedding=bool(hf.get("scale_embedding", False)),
        logits_bias=True, label_smoothing=0.0, pad_token_id=pad, eos_token_id=eos,
        decoder_start_token_id=hf.get("decoder_start_token_id", pad), init_std=float(hf.get("init_std", 0.02)),
    )


def state_from_marian(hf: dict[str, torch.Tensor], config: TransformerConfig, where: str) -> dict[str, torch.Tensor]:
    """lmforge-named tensors from Marian-named ones (see :data:`LAYER_TABLE`)."""
    hf = {k.removeprefix("model.") if k.startswith("model.") else k: v for k, v in hf.items()}

    def take(name: str) -> torch.Tensor:
        if name not in hf:
            raise FormatError(f"{where}: missing tensor {name!r}")
        return hf[name]

    out: dict[str, torch.Tensor] = {}
    shared = hf.get("shared.weight")
    if config.share_embeddings:
        out["tgt_embed.weight"] = shared if shared is not None else take("decoder.embed_tokens.weight")
    else:
        out["src_embed.weight"] = take("encoder.embed_tokens.weight")
        out["tgt_embed.weight"] = take("decoder.embed_tokens.weight")
    if not config.tie_embeddings:
        out["lm_head.weight"] = take("lm_head.weight")
    out["logits_bias"] = hf.get("final_logits_bias", torch.zeros(1, config.vocab_size))
    for side, blocks, n in (("encoder", "encoder_blocks", config.n_encoder_layer),
                            ("decoder", "decoder_blocks", config.n_layer)):
        for i in range(n):
            for ours, theirs in LAYER_TABLE.items():
                if side == "encoder" and ours.startswith(("cross_attn", "norm_cross")):
                    continue
                for suffix in ("weight", "bias"):
                    parts = [take(f"{side}.layers.{i}.{t}.{suffix}") for t in theirs]
                    out[f"{blocks}.{i}.{ours}.{suffix}"] = torch.cat(parts, 0) if len(parts) > 1 else parts[0]
    return out


def load_hf_marian(path: str | os.PathLike, *, dtype: torch.dtype | None = None, **_: Any) -> ModelParts:
    """The loader for a Marian folder (:func:`lmforge.load` wraps the parts into an ``LM``); a tokenizer only from a
    ``tokenizer.json`` (Marian's SentencePiece ``.spm`` files are not read)."""
    from lmforge.fileio import read_json

    folder = Path(path)
    hf_config = read_json(folder / "config.json")
    config = config_from_marian(hf_config, str(folder / "config.json"))
    state = state_from_marian(read_hf_weights(folder), config, str(folder))
    model = Transformer(config)
    expected = set(model.state_dict())
    if config.tie_embeddings:
        expected.discard("lm_head.weight")
    if config.share_embeddings:
        expected.discard("src_embed.weight")
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise FormatError(f"{folder}: missing tensor(s) {missing[:5]}, unexpected {unexpected[:5]}")
    for name, tensor in model.state_dict().items():
        if name in state and tuple(state[name].shape) != tuple(tensor.shape):
            raise FormatError(f"{folder}: tensor {name!r} has shape {tuple(state[name].shape)}, "
                              f"expected {tuple(tensor.shape)}")
    model.load_state_dict(state, strict=False)
    if dtype is not None:
        model.to(dtype)
    gen = {"eos_token_id": [config.eos_token_id], "pad_token_id": config.pad_token_id,
           "decoder_start_token_id": config.decoder_start_token_id}
    return ModelParts(model=model.eval(), tokenizer=read_tokenizer_files(folder), config=config,
                      generation_config=gen, path=folder)


def save_marian(folder: str | os.PathLike, model: Transformer, tokenizer: Any = None) -> Path:
    """Write ``model`` as a Marian folder (``config.json`` + ``model.safetensors`` [+ ``tokenizer.json``]) that
    ``transformers.MarianMTModel.from_pretrained`` and :func:`lmforge.load` open. Only the Marian-shaped switch
    settings can be exported (post-norm, sinusoidal positions, LayerNorm, biases)."""
    from safetensors.torch import save_file

    c = model.config
    inverse_act = {"silu": "swish", "relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_new"}
    if c.prenorm or c.norm != "layer" or not c.bias or c.mlp not in inverse_act:
        raise ConfigError("save_marian: Marian needs post-norm, LayerNorm, biases and a relu/silu/gelu MLP")
    folder = Path(folder)
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    if c.share_embeddings:
        out["model.shared.weight"] = sd["tgt_embed.weight"]
    else:
        out["model.encoder.embed_tokens.weight"] = sd["src_embed.weight"]
        out["model.decoder.embed_tokens.weight"] = sd["tgt_embed.weight"]
    if not c.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    out["final_logits_bias"] = sd["logits_bias"] if c.logits_bias else torch.zeros(1, c.vocab_size)
    for side, blocks, n in (("encoder", "encoder_blocks", c.n_encoder_layer), ("decoder", "decoder_blocks", c.n_layer)):
        for i in range(n):
            for ours, theirs in LAYER_TABLE.items():
                if side == "encoder" and ours.startswith(("cross_attn", "norm_cross")):
                    continue
                for suffix in ("weight", "bias"):
                    pieces = sd[f"{blocks}.{i}.{ours}.{suffix}"].chunk(len(theirs), 0)
                    for t, piece in zip(theirs, pieces, strict=True):
                        out[f"model.{side}.layers.{i}.{t}.{suffix}"] = piece
    out = {k: v.detach().contiguous().clone().cpu() for k, v in out.items()}
    hf_config = {
        "model_type": "marian", "architectures": ["MarianMTModel"], "vocab_size": c.src_vocab_size,
        "decoder_vocab_size": c.vocab_size, "share_encoder_decoder_embeddings": c.share_embeddings,
        "d_model": c.n_embd, "encoder_layers": c.n_encoder_layer, "decoder_layers": c.n_layer,
        "encoder_attention_heads": c.n_head, "decoder_attention_heads": c.n_head, "encoder_ffn_dim": c.ffn_hidden,
        "decoder_ffn_dim": c.ffn_hidden, "activation_function": inverse_act[c.mlp],
        "max_position_embeddings": c.block_size, "scale_embedding": c.scale_embedding, "dropout": c.dropout,
        "attention_dropout": 0.0, "activation_dropout": 0.0, "init_std": c.init_std,
        "pad_token_id": c.pad_token_id, "eos_token_id": c.eos_token_id, "forced_eos_token_id": c.eos_token_id,
        "decoder_start_token_id": c.decoder_start_token_id, "tie_word_embeddings": c.tie_embeddings,
        "is_encoder_decoder": True,
    }
    with model_folder(folder) as tmp:  # swapped in as a whole (lmforge.io.folders)
        save_file(out, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            write_tokenizer_files(tmp, tokenizer)
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
    return folder
