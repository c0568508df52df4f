"""Quantizing a loaded model, and lmforge folders that keep quantized layers.

:func:`quantize_model` swaps a GPT's weight matrices for :class:`~lmforge.nn.quantized.QuantizedLinear` layers:
every matrix in the blocks gets ``qtype``; the token embedding and the LM head (one matrix when tied) get an 8-bit
format (``qtype`` itself when it is 8-bit, else ``q8_0`` for GGUF targets and ``int8`` for lmforge's ``int4``),
as llama.cpp keeps ``token_embd``/``output`` at higher precision: their rows are gathered one at a time and the
head's errors land directly on the logits.

A quantized lmforge folder is an ordinary one (:func:`lmforge.io.save_model` writes it) whose ``lmforge.json`` also
has ``"quantization": {module name: {"qtype", "group", "kind"}}``; ``model.safetensors`` holds the layers'
buffers as they are in memory (plain nibbles or int8, float32 scales/zeros, K-quant header bytes) — portable,
nothing CPU-specific.

>>> lm = lmforge.load("model-folder")                      # doctest: +SKIP
>>> quantize_model(lm.model, "int4", group=64)             # doctest: +SKIP
>>> lmforge.io.save_model("model-int4", lm.model, lm.tokenizer)   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmforge.errors import ConfigError, FormatError
from lmforge.nn.quantized import FORMATS, INT4_GROUPS, QuantizedEmbedding, QuantizedLinear

QUANT_KEY = "quantization"


def embedding_qtype(qtype: str) -> str:
    """The 8-bit format the embedding / LM head get when the blocks get ``qtype``.

    >>> embedding_qtype("q4_0"), embedding_qtype("int4"), embedding_qtype("q8_0")
    ('q8_0', 'int8', 'q8_0')
    """
    if FORMATS[qtype].bits == 8:
        return qtype
    return "q8_0" if FORMATS[qtype].block else "int8"


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _group_for(name: str, qtype: str, in_features: int, group: int | None, fit_group: bool) -> int | None:
    """``group``, or with ``fit_group`` the largest smaller int4 group size dividing the row (int4 only)."""
    if qtype != "int4" or not group or not fit_group or in_features % group == 0:
        return group
    for candidate in sorted((g for g in INT4_GROUPS if g < group), reverse=True):
        if in_features % candidate == 0:
            return candidate
    return group  # check_format names the problem


def quantize_model(model: nn.Module, qtype: str, group: int | None = None, *, fit_group: bool = False
                   ) -> dict[str, dict[str, Any]]:
    """Quantize a GPT in place (see the module docstring); returns the per-layer spec stored in ``lmforge.json``.

    ``group`` (int4 only) must divide every row; ``fit_group=True`` instead takes, for rows it does not divide,
    the largest smaller int4 group size that does (SmolLM2's 576-wide rows: 64 for a requested 128).
    A layer that is already quantized is left as it is.
    """
    if qtype not in FORMATS:
        raise ConfigError(f"quantize: unknown format {qtype!r} (expected one of {', '.join(FORMATS)})")
    if not hasattr(model, "blocks") or not hasattr(model, "lm_head"):
        raise ConfigError(f"quantize: {type(model).__name__} is not a GPT-family model (lmforge quantizes "
                          "decoder-only GPT / Llama models)")
    tied = isinstance(model.lm_head, nn.Linear) and model.lm_head.weight is getattr(model.wte, "weight", None)
    for name, module in list(model.named_modules()):
        if name.startswith("blocks.") and isinstance(module, nn.Linear):
            g = _group_for(name, qtype, module.in_features, group, fit_group)
            try:
                layer = QuantizedLinear.from_float(module.weight, qtype, g, bias=module.bias)
            except ConfigError as e:
                raise ConfigError(f"{name}: {e}") from None
            _set_module(model, name, layer)
    head_qtype = embedding_qtype(qtype)
    if isinstance(model.wte, nn.Embedding) and (tied or isinstance(model.lm_head, nn.Linear)):
        try:
            table = QuantizedLinear.from_float(model.wte.weight, head_qtype)
        except ConfigError as e:
            raise ConfigError(f"wte: {e}") from None
        model.wte = QuantizedEmbedding.from_linear(table)
        if tied:
            model.lm_head = model.wte.tied_head()
    if isinstance(model.lm_head, nn.Linear):
        model.lm_head = QuantizedLinear.from_float(model.lm_head.weight, head_qtype, bias=model.lm_head.bias)
    return quantization_spec(model)


def quantization_spec(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module name: {"qtype", "group", "kind"}}`` of a model's quantized layers (tied head: ``"tied": true``)."""
    spec: dict[str, dict[str, Any]] = {}
    wte_q = getattr(getattr(model, "wte", None), "q", None)
    for name, module in model.named_modules():
        if isinstance(module, QuantizedLinear):
            spec[name] = {"qtype": module.qtype, "group": module.group, "kind": "linear",
                          "bias": module.bias is not None}
            if name == "lm_head" and wte_q is not None and module.q is wte_q:
                spec[name]["tied"] = True
        elif isinstance(module, QuantizedEmbedding):
            spec[name] = {"qtype": module.qtype, "group": module.group, "kind": "embedding"}
    return spec


def empty_quantized_model(config: Any, spec: dict[str, dict[str, Any]], source: str) -> nn.Module:
    """A GPT whose layers named in ``spec`` are quantized (buffers zero), the rest on the meta device."""
    from lmforge.models.gpt import GPT

    with torch.device("meta"):
        model = GPT(config)
    if not isinstance(spec, dict):
        raise FormatError(f"{source}: '{QUANT_KEY}' must be an object")
    for name, layer in spec.items():
        try:
            target = model.get_submodule(name)
            qtype, group, kind = layer["qtype"], layer.get("group"), layer.get("kind", "linear")
        except (AttributeError, KeyError, TypeError):
            raise FormatError(f"{source}: '{QUANT_KEY}' entry {name!r} does not name a layer of the model "
                              "with a qtype") from None
        try:
            if kind == "embedding":
                module = QuantizedEmbedding(target.num_embeddings, target.embedding_dim, qtype)
            elif layer.get("tied"):
                continue  # made below from the embedding
            else:
                module = QuantizedLinear(target.in_features, target.out_features, qtype, group,
                                         bias=bool(layer.get("bias")))
        except ConfigError as e:
            raise ConfigError(f"{source}: {name}: {e}") from None
        _set_module(model, name, module)
    if spec.get("lm_head", {}).get("tied"):
        if not isinstance(model.wte, QuantizedEmbedding):
            raise FormatError(f"{source}: lm_head is tied but wte is not quantized")
        model.lm_head = model.wte.tied_head()
    return model


def load_quantized_model(folder: Path, meta: dict, state: dict[str, torch.Tensor], source: str,
                         dtype: torch.dtype | None = None) -> nn.Module:
    """The model of a quantized lmforge folder (``lmforge.json``'s ``meta`` and the weights ``state``)."""
    from lmforge.models.gpt import GPTConfig
    from lmforge.nn.positions import Rotary

    if meta.get("arch") != "gpt":
        raise ConfigError(f"{source}: quantized folders hold GPT models, not {meta.get('arch')!r}")
    config = GPTConfig.from_dict(meta["config"], source)
    model = empty_quantized_model(config, meta[QUANT_KEY], source)
    tied_names = {"lm_head.weight"} if config.tie_embeddings and not isinstance(model.wte, QuantizedEmbedding) \
        else set()
    if "lm_head" in meta[QUANT_KEY] and meta[QUANT_KEY]["lm_head"].get("tied"):
        tied_names = {k for k in model.state_dict() if k.startswith("lm_head.")}
    expected = {k: v for k, v in model.state_dict().items() if k not in tied_names}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise FormatError(f"{source}: missing tensor(s) {missing[:5]}, unexpected tensor(s) {unexpected[:5]}")
    for name, ref in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(ref.shape) or (not got.is_floating_point() and got.dtype != ref.dtype):
            raise FormatError(f"{source}: tensor {name!r} is {tuple(got.shape)} {got.dtype}, expected "
                              f"{tuple(ref.shape)} {ref.dtype}")
    if dtype is not None:
        floats = {k for k, v in expected.items() if v.is_meta}  # plain parameters, not quantized buffers
        state = {k: v.to(dtype) if k in floats else v for k, v in state.items()}
    model.load_state_dict(state, strict=False, assign=True)
    if isinstance(model.wte, QuantizedEmbedding) and "lm_head" in meta[QUANT_KEY] \
            and meta[QUANT_KEY]["lm_head"].get("tied"):
        model.lm_head = model.wte.tied_head()
    elif config.tie_embeddings:
        model.lm_head.weight = model.wte.weight
    if config.pos == "rope":
        model.rotary = Rotary(config.head_dim, config.rope_theta, config.rope_scaling)
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_meta:
            raise FormatError(f"{source}: tensor {name!r} missing")
    return model.eval()
