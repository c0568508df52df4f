"""Write a GPT as a llama.cpp GGUF file (``lmforge export --gguf``): F32, F16, Q8_0 or Q4_0 weights, the
hyper-parameters, and a byte-level BPE tokenizer with its chat template — the inverse of :mod:`lmforge.io.gguf`.

Two shapes have a GGUF architecture: Llama-shaped models (RoPE, RMSNorm, SwiGLU, no biases) → ``llama``, and
GPT-2-shaped ones (learned positions, LayerNorm, tanh-GELU MLP, biases) → ``gpt2``. Anything else (MoE, sliding
windows, RoPE scaling, grouped-query GPT-2 …) is a :class:`ConfigError` naming the field.

Per tensor: 1-D tensors (norms, biases) and the learned position table are F32; the token embedding and an
untied LM head get Q8_0 under Q4_0 (llama.cpp also keeps them finer); a matrix whose rows are not a whole number
of 32-weight blocks stays F32. A layer that is already packed in the target format (a GGUF loaded with
``quantized=True``) is written with its exact blocks, so load → export reproduces the file's tensor bytes.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lmforge.errors import ConfigError

EXPORT_TYPES = ("f32", "f16", "q8_0", "q4_0")


def _llama_cpp_permute(rows: np.ndarray, n_heads: int) -> np.ndarray:
    """lmforge's RoPE row order (two halves per head) → llama.cpp's (interleaved pairs); rows may be packed blocks.

    >>> _llama_cpp_permute(np.array([[0], [1], [2], [3]]), 1)[:, 0]   # halves [0, 1 | 2, 3] → 0, 2, 1, 3
    array([0, 2, 1, 3])
    """
    head = rows.shape[0] // n_heads
    return rows.reshape(n_heads, 2, head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def gguf_architecture(config: Any) -> str:
    """``"llama"`` or ``"gpt2"`` for a GPTConfig, else a :class:`ConfigError` naming what does not fit."""
    c = config
    common = {"n_expert": (c.n_expert, 0), "sliding_window": (c.sliding_window, None),
              "rope_scaling": (c.rope_scaling, None)}
    llama = {"pos": (c.pos, "rope"), "norm": (c.norm, "rms"), "mlp": (c.mlp, "swiglu"), "bias": (c.bias, False),
             "qkv_bias": (c.qkv_bias, False)}
    gpt2 = {"pos": (c.pos, "learned"), "norm": (c.norm, "layer"), "mlp": (c.mlp, "gelu_tanh"), "bias": (c.bias, True),
            "n_kv_head": (c.n_kv_head, c.n_head), "head_dim": (c.head_dim, c.n_embd // c.n_head)}
    for arch, rules in (("llama", llama), ("gpt2", gpt2)):
        wrong = {k: v for k, (v, want) in {**common, **rules}.items() if v != want}
        if not wrong:
            return arch
        if arch == "llama" and c.pos == "rope" or arch == "gpt2" and c.pos == "learned":
            raise ConfigError(f"export --gguf: a {arch}-shaped model needs " + ", ".join(
                f"{k}={({**common, **rules})[k][1]!r} (this one has {v!r})" for k, v in wrong.items()))
    raise ConfigError(f"export --gguf: pos={c.pos!r}: only llama- and gpt2-shaped models have a GGUF architecture")


def _tokenizer_fields(tokenizer: Any) -> dict[str, Any]:
    """tokens, token types, merges and the pre-tokenizer name of a byte-level BPE tokenizer."""
    from lmforge.io.gguf import (
        _GPT2_SPLIT,
        PRE_TOKENIZERS,
        TOKEN_TYPE_CONTROL,
        TOKEN_TYPE_NORMAL,
        TOKEN_TYPE_USER_DEFINED,
    )

    hf = tokenizer.to_hf_json()
    model = hf.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        fallback = " with byte fallback" if model.get("byte_fallback") else ""
        raise ConfigError("export --gguf: only byte-level BPE tokenizers are written to GGUF "
                          f"(this one is {model.get('type')!r}{fallback})")
    vocab: dict[str, int] = dict(model["vocab"])
    for added in hf.get("added_tokens") or []:
        vocab[added["content"]] = added["id"]
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    for token, i in vocab.items():
        tokens[i] = token
    types = [TOKEN_TYPE_NORMAL] * size
    for added in hf.get("added_tokens") or []:
        types[added["id"]] = TOKEN_TYPE_CONTROL if added.get("special") else TOKEN_TYPE_USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    pre_json = json.dumps(hf.get("pre_tokenizer"))
    if '"use_regex": true' in pre_json:  # a ByteLevel step that splits with GPT-2's pattern without spelling it out
        pre_json += json.dumps(_GPT2_SPLIT)
    pre = "gpt-2"  # llama.cpp's name for it ("gpt2" is refused: unknown pre-tokenizer type)
    for name, (pattern, digits) in PRE_TOKENIZERS.items():
        if json.dumps(pattern)[1:-1] in pre_json and digits == ('"Digits"' in pre_json):
            pre = name
            break
    return {"tokens": tokens, "types": types, "merges": merges, "pre": pre}


def _float_weight(module: nn.Module) -> torch.Tensor:
    return module.weight.detach().float().cpu()


def _tensor(module: nn.Module, qtype: str, heads: tuple[int | None, ...] = (None,),
            split: tuple[int, ...] | None = None) -> list[tuple[np.ndarray, Any]]:
    """``[(array, raw GGML type or None for float32/16)]`` for a weight matrix, split into row parts; a part with a
    head count gets llama.cpp's RoPE row order."""
    from gguf.constants import GGMLQuantizationType
    from gguf.quants import quantize

    from lmforge.nn.quantized import QuantizedLinear

    packed = isinstance(module, QuantizedLinear) and module.qtype == qtype
    if packed:
        rows = module.gguf_blocks()
    else:
        rows = _float_weight(module).numpy()
    in_features = module.in_features if hasattr(module, "in_features") else module.embedding_dim
    if qtype in ("q8_0", "q4_0") and in_features % 32:
        qtype = "f32"  # rows are not whole blocks
    parts = np.split(rows, np.cumsum(split)[:-1]) if split else [rows]
    out = []
    for i, part in enumerate(parts):
        if heads[i]:
            part = _llama_cpp_permute(part, heads[i])
        if packed:
            out.append((np.ascontiguousarray(part), GGMLQuantizationType[qtype.upper()]))
        elif qtype == "f32":
            out.append((np.ascontiguousarray(part, dtype=np.float32), None))
        elif qtype == "f16":
            out.append((np.ascontiguousarray(part, dtype=np.float16), None))
        else:
            kind = GGMLQuantizationType[qtype.upper()]
            out.append((quantize(np.ascontiguousarray(part, dtype=np.float32), kind), kind))
    return out


def export_gguf(path: str | os.PathLike, model: nn.Module, tokenizer: Any = None,
                generation_config: dict | None = None, qtype: str = "f16", name: str = "lmforge") -> Path:
    """Write ``model`` (a GPT, float or quantized) and ``tokenizer`` as a GGUF file llama.cpp and
    ``transformers`` (``gguf_file=``) open; ``qtype`` is one of :data:`EXPORT_TYPES`."""
    from gguf import GGUFWriter

    from lmforge.fileio import atomic_write_with
    from lmforge.io.quantize import embedding_qtype

    if qtype not in EXPORT_TYPES:
        raise ConfigError(f"export --gguf: type {qtype!r} is not one of {', '.join(EXPORT_TYPES)}")
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "blocks"):
        raise ConfigError(f"export --gguf: {type(model).__name__} is not a GPT-family model")
    arch = gguf_architecture(config)
    if tokenizer is None:
        raise ConfigError("export --gguf: the model has no tokenizer; a GGUF file carries one (llama.cpp and "
                          "lmforge need it to run the model)")
    c = config
    head_type = embedding_qtype(qtype) if qtype.startswith("q") else qtype
    tensors: list[tuple[str, np.ndarray, Any]] = []

    def put(gguf_name: str, module: nn.Module, kind: str, heads: tuple[int | None, ...] = (None,),
            split: tuple[int, ...] | None = None, names: tuple[str, ...] | None = None) -> None:
        for part_name, (array, raw) in zip(names or (gguf_name,), _tensor(module, kind, heads, split), strict=True):
            tensors.append((part_name, array, raw))

    def put_float(gguf_name: str, tensor: torch.Tensor) -> None:
        tensors.append((gguf_name, tensor.detach().float().cpu().numpy().astype(np.float32), None))

    tied = not isinstance(model.lm_head, nn.Linear) and getattr(model.lm_head, "q", 0) is getattr(model.wte, "q", 1) \
        or isinstance(model.lm_head, nn.Linear) and model.lm_head.weight is getattr(model.wte, "weight", None)
    put("token_embd.weight", model.wte, head_type)
    if arch == "gpt2":
        put_float("position_embd.weight", model.wpe.weight)
    for i, block in enumerate(model.blocks):
        p = f"blk.{i}."
        put_float(p + "attn_norm.weight", block.norm_attn.weight)
        put_float(p + "ffn_norm.weight", block.norm_mlp.weight)
        if arch == "llama":
            q_rows, kv_rows = c.n_head * c.head_dim, c.n_kv_head * c.head_dim
            put("", block.attn.qkv, qtype, (c.n_head, c.n_kv_head, None), (q_rows, kv_rows, kv_rows),
                (p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"))
            put(p + "attn_output.weight", block.attn.proj, qtype)
            put("", block.mlp.gate_up, qtype, (None, None), (c.ffn_hidden, c.ffn_hidden),
                (p + "ffn_gate.weight", p + "ffn_up.weight"))
            put(p + "ffn_down.weight", block.mlp.proj, qtype)
        else:
            put_float(p + "attn_norm.bias", block.norm_attn.bias)
            put_float(p + "ffn_norm.bias", block.norm_mlp.bias)
            put(p + "attn_qkv.weight", block.attn.qkv, qtype)
            put_float(p + "attn_qkv.bias", block.attn.qkv.bias)
            put(p + "attn_output.weight", block.attn.proj, qtype)
            put_float(p + "attn_output.bias", block.attn.proj.bias)
            put(p + "ffn_up.weight", block.mlp.fc, qtype)
            put_float(p + "ffn_up.bias", block.mlp.fc.bias)
            put(p + "ffn_down.weight", block.mlp.proj, qtype)
            put_float(p + "ffn_down.bias", block.mlp.proj.bias)
    put_float("output_norm.weight", model.norm_f.weight)
    if arch == "gpt2":
        put_float("output_norm.bias", model.norm_f.bias)
    if not tied:
        put("output.weight", model.lm_head, head_type)

    def write(tmp: str) -> None:
        w = GGUFWriter(tmp, arch)
        w.add_name(name)
        w.add_block_count(c.n_layer)
        w.add_context_length(c.block_size)
        w.add_embedding_length(c.n_embd)
        w.add_feed_forward_length(c.ffn_hidden)
        w.add_head_count(c.n_head)
        if arch == "llama":
            w.add_head_count_kv(c.n_kv_head)
            if c.head_dim != c.n_embd // c.n_head:
                w.add_key_length(c.head_dim)
                w.add_value_length(c.head_dim)
            w.add_rope_dimension_count(c.head_dim)
            w.add_rope_freq_base(c.rope_theta)
            w.add_layer_norm_rms_eps(c.norm_eps)
        else:
            w.add_layer_norm_eps(c.norm_eps)
        if tokenizer is not None:
            fields = _tokenizer_fields(tokenizer)
            if len(fields["tokens"]) != c.vocab_size:
                warnings.warn(f"export --gguf: the tokenizer has {len(fields['tokens'])} tokens, the model "
                              f"{c.vocab_size} rows; padding the token list", stacklevel=3)
                fields["tokens"] += [f"[PAD{i}]" for i in range(len(fields["tokens"]), c.vocab_size)]
                fields["types"] += [1] * (c.vocab_size - len(fields["types"]))
            w.add_tokenizer_model("gpt2")
            w.add_tokenizer_pre(fields["pre"])
            w.add_token_list(fields["tokens"][:c.vocab_size])
            w.add_token_types(fields["types"][:c.vocab_size])
            w.add_token_merges(fields["merges"])
            gen = dict(generation_config or {})
            for key, add in (("bos_token_id", w.add_bos_token_id), ("pad_token_id", w.add_pad_token_id)):
                value = gen.get(key, getattr(tokenizer, key, None))
                if isinstance(value, int):
                    add(value)
            eos = gen.get("eos_token_id", getattr(tokenizer, "eos_token_id", None))
            eos = eos[0] if isinstance(eos, list) and eos else eos
            if isinstance(eos, int):
                w.add_eos_token_id(eos)
            w.add_add_bos_token(bool(getattr(tokenizer, "add_bos", False)))
            if getattr(tokenizer, "chat_template", None):
                w.add_chat_template(tokenizer.chat_template)
        for tensor_name, array, raw in tensors:
            w.add_tensor(tensor_name, array, raw_dtype=raw)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    path = Path(path)
    atomic_write_with(path, write)
    return path
