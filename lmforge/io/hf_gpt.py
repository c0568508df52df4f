"""Hugging Face model folders for the GPT family: import GPT-2, Llama, Mistral, Mixtral and Qwen2 checkpoints
(with RoPE scaling: linear, dynamic, llama3, yarn; and sliding-window attention), and export lmforge GPT models back
to the layout ``transformers`` loads.

A folder holds ``config.json`` (``model_type`` picks the architecture), the weights (``model.safetensors``,
a sharded ``model.safetensors.index.json``, or ``pytorch_model.bin`` read with ``weights_only=True``), and usually
``tokenizer.json`` and ``generation_config.json``. Parameter names are translated by ONE table per architecture
(:data:`NAME_TABLES`, lists of :class:`~lmforge.io.weight_names.Row`); lmforge fuses Q|K|V into ``qkv`` and
gate|up into ``gate_up``, so some rows list several HF tensors that are stacked along the rows (and split again on
export).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from lmforge.errors import ConfigError, FormatError
from lmforge.io.folders import model_folder
from lmforge.io.hf_files import read_generation_config, read_hf_config, read_hf_weights
from lmforge.io.model_parts import ModelParts
from lmforge.io.tokenizer_files import read_tokenizer_files, write_tokenizer_files
from lmforge.io.weight_names import Row, expand_rows
from lmforge.io.weight_names import row as _r
from lmforge.models.gpt import GPT, GPTConfig

SUPPORTED_MODEL_TYPES = ("gpt2", "llama", "mistral", "mixtral", "qwen2")


_LLAMA_ATTN_AND_NORMS = [
    _r("wte.weight", "model.embed_tokens.weight"),
    _r("blocks.{i}.norm_attn.weight", "model.layers.{i}.input_layernorm.weight"),
    _r("blocks.{i}.attn.qkv.weight", *(f"model.layers.{{i}}.self_attn.{p}_proj.weight" for p in "qkv")),
    _r("blocks.{i}.attn.qkv.bias", *(f"model.layers.{{i}}.self_attn.{p}_proj.bias" for p in "qkv")),
    _r("blocks.{i}.attn.proj.weight", "model.layers.{i}.self_attn.o_proj.weight"),
    _r("blocks.{i}.attn.proj.bias", "model.layers.{i}.self_attn.o_proj.bias"),
    _r("blocks.{i}.norm_mlp.weight", "model.layers.{i}.post_attention_layernorm.weight"),
    _r("norm_f.weight", "model.norm.weight"),
    _r("lm_head.weight", "lm_head.weight"),
]

NAME_TABLES: dict[str, list[Row]] = {
    "gpt2": [
        _r("wte.weight", "transformer.wte.weight"),
        _r("wpe.weight", "transformer.wpe.weight"),
        _r("blocks.{i}.norm_attn.weight", "transformer.h.{i}.ln_1.weight"),
        _r("blocks.{i}.norm_attn.bias", "transformer.h.{i}.ln_1.bias"),
        _r("blocks.{i}.attn.qkv.weight", "transformer.h.{i}.attn.c_attn.weight", transpose=True),
        _r("blocks.{i}.attn.qkv.bias", "transformer.h.{i}.attn.c_attn.bias"),
        _r("blocks.{i}.attn.proj.weight", "transformer.h.{i}.attn.c_proj.weight", transpose=True),
        _r("blocks.{i}.attn.proj.bias", "transformer.h.{i}.attn.c_proj.bias"),
        _r("blocks.{i}.norm_mlp.weight", "transformer.h.{i}.ln_2.weight"),
        _r("blocks.{i}.norm_mlp.bias", "transformer.h.{i}.ln_2.bias"),
        _r("blocks.{i}.mlp.fc.weight", "transformer.h.{i}.mlp.c_fc.weight", transpose=True),
        _r("blocks.{i}.mlp.fc.bias", "transformer.h.{i}.mlp.c_fc.bias"),
        _r("blocks.{i}.mlp.proj.weight", "transformer.h.{i}.mlp.c_proj.weight", transpose=True),
        _r("blocks.{i}.mlp.proj.bias", "transformer.h.{i}.mlp.c_proj.bias"),
        _r("norm_f.weight", "transformer.ln_f.weight"),
        _r("norm_f.bias", "transformer.ln_f.bias"),
        _r("lm_head.weight", "lm_head.weight"),
    ],
    "llama": [
        *_LLAMA_ATTN_AND_NORMS,
        _r("blocks.{i}.mlp.gate_up.weight", *(f"model.layers.{{i}}.mlp.{p}_proj.weight" for p in ("gate", "up"))),
        _r("blocks.{i}.mlp.gate_up.bias", *(f"model.layers.{{i}}.mlp.{p}_proj.bias" for p in ("gate", "up"))),
        _r("blocks.{i}.mlp.proj.weight", "model.layers.{i}.mlp.down_proj.weight"),
        _r("blocks.{i}.mlp.proj.bias", "model.layers.{i}.mlp.down_proj.bias"),
    ],
    "mixtral": [
        *_LLAMA_ATTN_AND_NORMS,
        _r("blocks.{i}.mlp.router.weight", "model.layers.{i}.block_sparse_moe.gate.weight"),
        _r(
            "blocks.{i}.mlp.experts.{e}.gate_up.weight",
            "model.layers.{i}.block_sparse_moe.experts.{e}.w1.weight",
            "model.layers.{i}.block_sparse_moe.experts.{e}.w3.weight",
        ),
        _r("blocks.{i}.mlp.experts.{e}.proj.weight", "model.layers.{i}.block_sparse_moe.experts.{e}.w2.weight"),
    ],
}
NAME_TABLES["mistral"] = NAME_TABLES["qwen2"] = NAME_TABLES["llama"]


# ---------------------------------------------------------------- configs


def _get(hf: dict, key: str, source: str, default: Any = ...) -> Any:
    if key in hf and hf[key] is not None:
        return hf[key]
    if default is ...:
        raise ConfigError(f"{source}: field {key!r} is missing")
    return default


_GPT2_ACTIVATIONS = {
    "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu": "gelu",
}


def config_from_hf(hf: dict, source: str = "config.json") -> GPTConfig:
    """Translate an HF ``config.json`` (gpt2 / llama / mistral / mixtral / qwen2) into a :class:`GPTConfig`."""
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"{source}: model_type {model_type!r} is not supported by the GPT importer "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    if model_type == "gpt2":
        act = _get(hf, "activation_function", source, "gelu_new")
        if act not in _GPT2_ACTIVATIONS:
            raise ConfigError(f"{source}: activation_function {act!r} is not supported")
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
            if hf.get(flag):
                raise ConfigError(f"{source}: {flag}=true is not supported")
        if hf.get("scale_attn_weights") is False:
            raise ConfigError(f"{source}: scale_attn_weights=false is not supported")
        return GPTConfig(
            vocab_size=_get(hf, "vocab_size", source), block_size=_get(hf, "n_positions", source),
            n_layer=_get(hf, "n_layer", source), n_head=_get(hf, "n_head", source), n_embd=_get(hf, "n_embd", source),
            ffn_hidden=hf.get("n_inner"), norm="layer", norm_eps=_get(hf, "layer_norm_epsilon", source, 1e-5),
            mlp=_GPT2_ACTIVATIONS[act], pos="learned", bias=True,
            tie_embeddings=_get(hf, "tie_word_embeddings", source, True),
        )
    act = _get(hf, "hidden_act", source, "silu")
    if act != "silu":
        raise ConfigError(f"{source}: hidden_act {act!r} is not supported (expected 'silu')")
    max_positions = _get(hf, "max_position_embeddings", source)
    theta, rope_scaling, block_size = _rope_from_hf(hf, max_positions, source)
    window, layer_types = _sliding_window_from_hf(hf, model_type, source)
    if model_type == "qwen2":  # biases on q, k, v only
        bias, qkv_bias = False, True
    else:
        bias = qkv_bias = bool(hf.get("attention_bias", False))
        if bool(hf.get("mlp_bias", False)) != bias and model_type == "llama":
            raise ConfigError(f"{source}: attention_bias != mlp_bias is not supported")
    try:
        return GPTConfig(
            vocab_size=_get(hf, "vocab_size", source), block_size=block_size,
            n_layer=_get(hf, "num_hidden_layers", source), n_head=_get(hf, "num_attention_heads", source),
            n_embd=_get(hf, "hidden_size", source), n_kv_head=hf.get("num_key_value_heads"),
            head_dim=hf.get("head_dim"), ffn_hidden=_get(hf, "intermediate_size", source), norm="rms",
            norm_eps=_get(hf, "rms_norm_eps", source, 1e-6), mlp="swiglu", pos="rope", rope_theta=float(theta),
            rope_scaling=rope_scaling, sliding_window=window, layer_types=layer_types, bias=bias, qkv_bias=qkv_bias,
            tie_embeddings=_get(hf, "tie_word_embeddings", source, False),
            n_expert=hf.get("num_local_experts", 0) if model_type == "mixtral" else 0,
            n_expert_per_tok=hf.get("num_experts_per_tok", 2),
            router_aux_loss_coef=hf.get("router_aux_loss_coef", 0.01),
        )
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _rope_from_hf(hf: dict, max_positions: int, source: str) -> tuple[float, dict | None, int]:
    """``(rope_theta, rope_scaling or None, block_size)`` from an HF config, read as transformers 5 reads it:
    ``rope_scaling`` (older configs) wins over ``rope_parameters``; ``rope_theta`` may sit inside or beside it.

    Dynamic NTK rescales only beyond ``max_position_embeddings``, so that becomes its
    ``original_max_position_embeddings`` and the context lmforge allows grows to ``factor`` times it.
    """
    rope = dict(hf.get("rope_scaling") or hf.get("rope_parameters") or {})
    theta = rope.pop("rope_theta", None) or hf.get("rope_theta") or 10000.0
    rope_type = rope.pop("rope_type", None) or rope.pop("type", None) or "default"
    rope.pop("type", None)
    partial = rope.pop("partial_rotary_factor", hf.get("partial_rotary_factor"))
    if partial not in (None, 1, 1.0):
        raise ConfigError(f"{source}: partial_rotary_factor={partial} is not supported (RoPE on every channel only)")
    if rope_type == "default":
        return theta, None, max_positions
    scaling = {"rope_type": rope_type, **rope}
    if rope_type in ("yarn", "llama3"):
        # transformers: a top-level original_max_position_embeddings wins, else max_position_embeddings
        original = hf.get("original_max_position_embeddings") or rope.get("original_max_position_embeddings")
        scaling["original_max_position_embeddings"] = original or max_positions
        if rope_type == "yarn" and scaling.get("factor") is None:
            scaling["factor"] = max_positions / scaling["original_max_position_embeddings"]
    block_size = max_positions
    if rope_type == "dynamic":
        scaling.pop("original_max_position_embeddings", None)  # transformers ignores it for dynamic
        scaling["original_max_position_embeddings"] = max_positions
        block_size = int(max_positions * float(scaling.get("factor") or 1.0))
    return theta, scaling, block_size


_HF_LAYER_TYPES = {"full_attention": "full", "sliding_attention": "sliding"}


def _sliding_window_from_hf(hf: dict, model_type: str, source: str) -> tuple[int | None, list[str] | None]:
    """``(sliding_window, layer_types)`` as transformers applies them: Mistral and Mixtral slide in every layer
    (Mistral's default window is 4096 when the field is absent); Qwen2 only with ``use_sliding_window``, in the
    layers named by ``layer_types`` (default: layers ``max_window_layers`` and up); Llama never slides."""
    if model_type == "llama":
        return None, None
    if model_type == "qwen2":
        window = hf.get("sliding_window", 4096) if hf.get("use_sliding_window", False) else None
        if window is None:
            return None, None
        hf_types = hf.get("layer_types") or [
            "sliding_attention" if i >= hf.get("max_window_layers", 28) else "full_attention"
            for i in range(_get(hf, "num_hidden_layers", source))
        ]
        unknown = sorted(set(hf_types) - set(_HF_LAYER_TYPES))
        if unknown:
            raise ConfigError(f"{source}: layer_types {unknown} are not supported (expected {list(_HF_LAYER_TYPES)})")
        return window, [_HF_LAYER_TYPES[kind] for kind in hf_types]
    window = hf.get("sliding_window", 4096 if model_type == "mistral" else None)
    return window, None


def model_type_for(cfg: GPTConfig) -> str:
    """Which HF architecture can hold this config exactly (or a ConfigError saying why none can)."""
    if cfg.pos == "learned" and cfg.norm == "layer" and cfg.mlp in ("gelu", "gelu_tanh") and cfg.bias:
        if cfg.n_kv_head != cfg.n_head or cfg.head_dim * cfg.n_head != cfg.n_embd or cfg.n_expert:
            raise ConfigError("export: GPT-2 layout needs n_kv_head == n_head, head_dim * n_head == n_embd, no MoE")
        return "gpt2"
    if cfg.pos == "rope" and cfg.norm == "rms" and cfg.mlp == "swiglu":
        some_full = cfg.layer_types is not None and "full" in cfg.layer_types
        if cfg.qkv_bias and not cfg.bias and not cfg.n_expert:
            return "qwen2"  # the only layout with biases on q, k, v alone; also the only one mixing window layers
        if cfg.qkv_bias != cfg.bias:
            raise ConfigError("export: Llama needs qkv_bias == bias (HF's attention_bias covers q, k, v and o); "
                              "Qwen2 has q/k/v biases only, and no mixture of experts")
        if cfg.sliding_window is not None and (cfg.bias or some_full):
            raise ConfigError("export: a sliding window needs Mistral/Mixtral (no biases, every layer sliding) or "
                              "Qwen2 (qkv_bias=True, bias=False)")
        if cfg.n_expert:
            return "mixtral"
        return "mistral" if cfg.sliding_window is not None else "llama"
    raise ConfigError(
        f"export: no Hugging Face architecture matches pos={cfg.pos!r}, norm={cfg.norm!r}, mlp={cfg.mlp!r} "
        "(GPT-2: learned/layer/gelu_tanh with biases; Llama: rope/rms/swiglu)"
    )


_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "mixtral": "MixtralForCausalLM",
                  "qwen2": "Qwen2ForCausalLM"}


def config_to_hf(cfg: GPTConfig) -> dict:
    """The ``config.json`` ``transformers`` needs to rebuild ``cfg``."""
    model_type = model_type_for(cfg)
    if model_type == "gpt2":
        return {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
            "n_positions": cfg.block_size, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
            "n_inner": cfg.ffn_hidden, "activation_function": "gelu_new" if cfg.mlp == "gelu_tanh" else "gelu",
            "layer_norm_epsilon": cfg.norm_eps, "tie_word_embeddings": cfg.tie_embeddings,
            "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
            "initializer_range": cfg.init_std, "dtype": "float32",
        }
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    max_positions = cfg.block_size
    if cfg.rope_scaling:
        rope.update({k: v for k, v in cfg.rope_scaling.items() if v is not None})
        if rope["rope_type"] == "dynamic":  # transformers reads the original length from max_position_embeddings
            max_positions = rope.pop("original_max_position_embeddings")
    hf = {
        "architectures": [_ARCHITECTURES[model_type]],
        "model_type": model_type, "vocab_size": cfg.vocab_size, "max_position_embeddings": max_positions,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_kv_head,
        "hidden_size": cfg.n_embd, "head_dim": cfg.head_dim, "intermediate_size": cfg.ffn_hidden,
        "rms_norm_eps": cfg.norm_eps, "hidden_act": "silu", "rope_theta": cfg.rope_theta, "rope_parameters": rope,
        "tie_word_embeddings": cfg.tie_embeddings, "attention_dropout": cfg.dropout,
        "initializer_range": cfg.init_std, "dtype": "float32",
    }
    if model_type == "mixtral":
        hf.update(num_local_experts=cfg.n_expert, num_experts_per_tok=cfg.n_expert_per_tok,
                  router_aux_loss_coef=cfg.router_aux_loss_coef)
    if model_type in ("mistral", "mixtral"):
        hf["sliding_window"] = cfg.sliding_window
    elif model_type == "qwen2":
        sliding = cfg.sliding_window is not None
        kinds = cfg.layer_types or ["full"] * cfg.n_layer
        hf.update(use_sliding_window=sliding, sliding_window=cfg.sliding_window,
                  max_window_layers=kinds.index("sliding") if "sliding" in kinds else cfg.n_layer,
                  layer_types=[f"{kind}_attention" for kind in kinds])
    else:
        hf.update(attention_bias=cfg.bias, mlp_bias=cfg.bias)
    return hf


# ---------------------------------------------------------------- weights


def _expand(table: list[Row], cfg: GPTConfig) -> list[Row]:
    return expand_rows(table, cfg.n_layer, cfg.n_expert)


def state_dict_from_hf(
    weights: dict[str, torch.Tensor], cfg: GPTConfig, model_type: str, source: str
) -> dict[str, torch.Tensor]:
    """HF-named tensors → lmforge-named tensors, checking every needed tensor is there with the right shape."""
    with torch.device("meta"):
        expected = {k: v.shape for k, v in GPT(cfg).state_dict().items()}
    if model_type == "gpt2" and "transformer.wte.weight" not in weights and "wte.weight" in weights:
        weights = {f"transformer.{k}": v for k, v in weights.items()}  # saved from GPT2Model (no LM head)
    state = {}
    for row in _expand(NAME_TABLES[model_type], cfg):
        if row.ours not in expected or (row.ours == "lm_head.weight" and cfg.tie_embeddings):
            continue  # e.g. biases of a bias-free model
        missing = [t for t in row.theirs if t not in weights]
        if missing:
            raise FormatError(f"{source}: tensor {missing[0]!r} is missing")
        parts = [weights[t].t() if row.transpose else weights[t] for t in row.theirs]
        try:
            tensor = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
        except RuntimeError:
            shapes = {t: tuple(weights[t].shape) for t in row.theirs}
            raise FormatError(f"{source}: tensors {shapes} have mismatched shapes") from None
        if tuple(tensor.shape) != tuple(expected[row.ours]):
            want = tuple(expected[row.ours])
            if row.transpose:
                want = want[::-1]
            got = {t: tuple(weights[t].shape) for t in row.theirs}
            raise FormatError(f"{source}: tensor(s) {got} do not fit the config (expected {want} in total)")
        state[row.ours] = tensor
    return state


def state_dict_to_hf(model: GPT) -> dict[str, torch.Tensor]:
    """lmforge-named tensors → HF-named, contiguous tensors (fused matrices split again)."""
    cfg = model.config
    ours = model.state_dict()
    model_type = model_type_for(cfg)
    out = {}
    for row in _expand(NAME_TABLES[model_type], cfg):
        if row.ours not in ours or (row.ours == "lm_head.weight" and cfg.tie_embeddings):
            continue
        tensor = ours[row.ours].detach()
        if len(row.theirs) > 1:
            if ".qkv." in row.ours:
                sizes = [cfg.n_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim]
            else:  # gate_up
                sizes = [cfg.ffn_hidden, cfg.ffn_hidden]
            parts = tensor.split(sizes, dim=0)
        else:
            parts = [tensor]
        for name, part in zip(row.theirs, parts, strict=True):
            out[name] = (part.t() if row.transpose else part).contiguous().clone()
    return out


# ---------------------------------------------------------------- folders


def load_hf_gpt(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, **_: Any) -> ModelParts:
    """The loader for an HF GPT-2 / Llama / Mistral / Mixtral / Qwen2 folder (:func:`lmforge.load` wraps the parts
    into an ``LM``)."""
    folder = Path(path)
    if not folder.is_dir():
        raise FormatError(f"{folder}: not a folder (expected a Hugging Face model folder with config.json)")
    hf = read_hf_config(folder / "config.json")
    cfg = config_from_hf(hf, str(folder / "config.json"))
    model_type = hf["model_type"]
    state = state_dict_from_hf(read_hf_weights(folder), cfg, model_type, str(folder))
    model = GPT.from_state_dict(cfg, state, str(folder), dtype=dtype).eval()
    return ModelParts(model=model, tokenizer=read_tokenizer_files(folder), config=cfg,
                      generation_config=read_generation_config(folder, hf), path=folder)


def save_hf_gpt(
    folder: str | os.PathLike, model: GPT, tokenizer: Any = None, generation_config: dict | None = None
) -> Path:
    """Write ``model`` as an HF folder (``config.json``, ``model.safetensors``, ``generation_config.json``, and
    ``tokenizer.json`` when a tokenizer is given), the folder as a whole. ``transformers`` loads the result with
    ``AutoModelForCausalLM.from_pretrained(folder)``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    hf = config_to_hf(model.config)
    gen = dict(generation_config or {})
    for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
        if key not in gen and tokenizer is not None and getattr(tokenizer, key, None) is not None:
            gen[key] = getattr(tokenizer, key)
    hf.update({k: v for k, v in gen.items() if k in ("eos_token_id", "bos_token_id", "pad_token_id")})
    tensors = state_dict_to_hf(model)
    with model_folder(folder) as tmp:  # swapped in as a whole (lmforge.io.folders)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n", encoding="utf-8")
        if tokenizer is not None:
            write_tokenizer_files(tmp, tokenizer)
    return folder
