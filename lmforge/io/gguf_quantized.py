"""``lmforge.load("model.gguf")`` keeping the weights quantized: each GGUF tensor becomes the layer that holds its
blocks (:class:`~lmforge.nn.quantized.QuantizedLinear`, :class:`~lmforge.nn.quantized.QuantizedEmbedding`) instead
of a float32 matrix, so the model in memory is about the size of the file.

Per tensor (after the name table and RoPE row order of :mod:`lmforge.io.gguf`, which apply to packed rows just as
to float rows, since every GGUF block lies inside one row):

- Q8_0, Q4_0, Q4_1, Q4_K, Q6_K weight matrices stay packed; fused matrices (Q|K|V, gate|up) stay packed when all
  their parts share one type, and are dequantized to float otherwise (e.g. a Q4_K_M file's Q6_K ``attn_v``);
- the token embedding stays packed when its rows are 8-bit (Q8_0, Q6_K) — a tied LM head then reads the same
  bytes — and is dequantized otherwise (4-bit rows cannot be gathered by the kernels);
- F32 / F16 / BF16 tensors (norms) are float; any other quantization type is a :class:`FormatError` naming the
  type and the tensor (``quantized=False`` dequantizes it through ``gguf``).

No cache: reading the blocks out of the memory-mapped file takes about as long as reading a cache entry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lmforge.errors import ConfigError, FormatError
from lmforge.io.model_parts import ModelParts

# GGML type name → lmforge qtype kept packed
KEPT_TYPES = {"Q8_0": "q8_0", "Q4_0": "q4_0", "Q4_1": "q4_1", "Q4_K": "q4_k", "Q6_K": "q6_k"}
FLOAT_TYPES = ("F32", "F16", "BF16")


def _rows(name: str, tensor: Any, config: dict[str, Any]) -> np.ndarray:
    """A tensor's rows as stored (blocks ``(N, row_bytes)`` or floats ``(N, K)``), RoPE rows in lmforge's order."""
    from lmforge.io.gguf import unpermute_rope_rows

    data = np.asarray(tensor.data)
    if data.ndim == 1:
        data = data.reshape(1, -1)
    if name.endswith(".attn_q.weight"):
        data = unpermute_rope_rows(data, config["n_head"])
    elif name.endswith(".attn_k.weight"):
        data = unpermute_rope_rows(data, config["n_kv_head"])
    return data


def _float_rows(gf: Any, name: str, tensor: Any, config: dict[str, Any]) -> np.ndarray:
    from gguf.quants import dequantize

    from lmforge.io.gguf import unpermute_rope_rows

    try:
        array = dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as e:
        raise FormatError(f"{gf.path}: tensor {name!r}: {tensor.tensor_type.name} cannot be dequantized ({e})"
                          ) from None
    if name.endswith(".attn_q.weight"):
        array = unpermute_rope_rows(array, config["n_head"])
    elif name.endswith(".attn_k.weight"):
        array = unpermute_rope_rows(array, config["n_kv_head"])
    return np.asarray(array, dtype=np.float32)


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def quantized_gpt_from_gguf(gf: Any, config_kwargs: dict[str, Any], dtype: torch.dtype | None = None) -> nn.Module:
    """A :class:`~lmforge.models.gpt.GPT` whose weight matrices keep the file's quantized blocks."""
    from lmforge.io.gguf import ROPE_FREQS_TENSOR, _name_table
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.nn.positions import Rotary
    from lmforge.nn.quantized import QuantizedEmbedding, QuantizedLinear

    try:
        config = GPTConfig(**config_kwargs)
    except ConfigError as e:
        raise ConfigError(f"{gf.path}: {e}") from None
    table = _name_table(config.n_layer)
    unknown = sorted(set(gf.tensors) - set(table) - {ROPE_FREQS_TENSOR})
    if unknown:
        raise FormatError(f"{gf.path}: tensors a {gf.architecture} model does not have: {unknown[:5]}")
    groups: dict[str, dict[int, str]] = {}  # lmforge name → part → GGUF name
    for gguf_name, (ours, part) in table.items():
        groups.setdefault(ours, {})[part] = gguf_name
    with torch.device("meta"):
        model = GPT(config)
    floats: dict[str, torch.Tensor] = {}
    embedding_packed = False
    for ours, parts in groups.items():
        names = [parts[i] for i in sorted(parts)]
        present = [n for n in names if n in gf.tensors]
        if ours == "lm_head.weight" and not present:
            continue  # tied to the embedding
        if len(present) != len(names):
            raise FormatError(f"{gf.path}: tensor(s) {sorted(set(names) - set(present))} missing (needed for {ours})")
        tensors = [gf.tensors[n] for n in names]
        types = [t.tensor_type.name for t in tensors]
        for name, kind in zip(names, types, strict=True):
            if kind not in KEPT_TYPES and kind not in FLOAT_TYPES:
                raise FormatError(f"{gf.path}: tensor {name!r} is {kind}, which lmforge cannot keep quantized "
                                  f"(kept: {', '.join(KEPT_TYPES)}); load it with quantized=False to dequantize it")
        module_path = ours.removesuffix(".weight")
        target = model.get_submodule(module_path)
        qtype = KEPT_TYPES.get(types[0]) if len(set(types)) == 1 else None
        if qtype and ours == "wte.weight":
            qtype = qtype if qtype in ("q8_0", "q6_k") else None  # 4-bit rows cannot be gathered
        if qtype and isinstance(target, (nn.Linear, nn.Embedding)):
            raw = np.concatenate([_rows(n, t, config_kwargs) for n, t in zip(names, tensors, strict=True)])
            layer = QuantizedLinear.from_gguf(np.ascontiguousarray(raw), qtype, in_features=config.n_embd
                                              if ours == "wte.weight" else target.in_features)
            if tuple(layer.q.shape[:1]) != (target.weight.shape[0],):
                raise FormatError(f"{gf.path}: {names[0]} has {layer.out_features} rows, expected "
                                  f"{target.weight.shape[0]} for {ours}")
            if ours == "wte.weight":
                _set_module(model, module_path, QuantizedEmbedding.from_linear(layer))
                embedding_packed = True
            else:
                _set_module(model, module_path, layer)
            continue
        array = np.concatenate([_float_rows(gf, n, t, config_kwargs) for n, t in zip(names, tensors, strict=True)])
        floats[ours] = torch.from_numpy(array).to(dtype or torch.float32)
    if config.tie_embeddings:
        floats.pop("lm_head.weight", None)
        if embedding_packed:
            model.lm_head = model.wte.tied_head()
    expected = {k: v.shape for k, v in model.state_dict().items() if v.is_meta}
    if config.tie_embeddings and not embedding_packed:
        expected.pop("lm_head.weight", None)
    wrong = [f"{k} {tuple(floats[k].shape)} (expected {tuple(s)})" for k, s in expected.items()
             if k in floats and tuple(floats[k].shape) != tuple(s)]
    missing = sorted(set(expected) - set(floats))
    if wrong or missing:
        raise FormatError(f"{gf.path}: tensor shape(s) {wrong[:3]}, missing {missing[:5]}")
    model.load_state_dict(floats, strict=False, assign=True)
    if config.tie_embeddings and not embedding_packed:
        model.lm_head.weight = model.wte.weight
    if config.pos == "rope":  # non-persistent buffer: rebuild it off the meta device
        model.rotary = Rotary(config.head_dim, config.rope_theta, config.rope_scaling)
    return model.eval()


def load_gguf_quantized(path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> ModelParts:
    """The parts of a GGUF file's model with its quantized tensors kept packed (``lmforge.load`` makes the LM)."""
    from lmforge.io.gguf import (
        _generation_config,
        gguf_config_kwargs,
        gguf_tokenizer_spec,
        open_gguf,
        tokenizer_from_spec,
    )

    path = Path(path)
    gf = open_gguf(path)
    config_kwargs = gguf_config_kwargs(gf)
    spec = gguf_tokenizer_spec(gf)
    model = quantized_gpt_from_gguf(gf, config_kwargs, dtype)
    return ModelParts(model=model, tokenizer=tokenizer_from_spec(spec), config=model.config,
              generation_config=_generation_config(gf), path=path)
