"""Import llama.cpp's GGUF files: one file holds the weights (usually quantized), the hyper-parameters, the
tokenizer (vocabulary, merges, special ids, pre-tokenizer name) and the chat template.

Reading goes through the ``gguf`` package that llama.cpp maintains; quantized blocks (Q4_0, Q4_1, Q8_0, K-quants …)
are expanded to float with ``gguf.quants.dequantize``. Three things need care:

* names: GGUF says ``blk.3.attn_q.weight``, lmforge says "the first rows of ``blocks.3.attn.qkv.weight``" (Q|K|V
  fused) — ONE table below, :data:`TENSOR_NAMES`;
* RoPE layout: llama.cpp's converter permutes the rows of ``attn_q``/``attn_k`` so that rotated channel pairs are
  adjacent (``x0,x1``), while lmforge (like the Hugging Face checkpoints) pairs channel ``i`` with ``i + D/2``;
  :func:`unpermute_rope_rows` undoes it;
* the pre-tokenizer: the file only names it (``tokenizer.ggml.pre = "smollm"``); the regex that goes with each
  name is in :data:`PRE_TOKENIZERS`;
* long-context RoPE: ``{arch}.rope.scaling.type`` linear / yarn (with ``.factor``,
  ``.original_context_length``, ``.yarn_beta_fast``/``.yarn_beta_slow``) becomes ``rope_scaling`` with the meaning
  llama.cpp gives it; Llama 3.1 files carry their "llama3" schedule as a ``rope_freqs.weight`` tensor of
  per-rotation divisors instead, which :func:`rope_scaling_from_freq_factors` reads back (and checks). Keys
  lmforge cannot honour (longrope, yarn_log_multiplier, a sliding window on llama) raise ``ConfigError``;
  transformers' GGUF loader, by contrast, silently ignores all of them for llama files;
* SentencePiece vocabularies (``tokenizer.ggml.model = "llama"``: Llama 2, Mistral) store no merges, only a score
  per token: the merges are rebuilt from the scores (:func:`merges_from_scores`) and the tokenizer is the
  character-level BPE with byte fallback that transformers builds for the same file.

Dequantizing a whole file takes a second or two, building the float32 state dict more; the result is cached as
safetensors keyed by the file's content hash (see :mod:`lmforge.io.cache`), so a second load is fast.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmforge.errors import ConfigError, FormatError
from lmforge.io.model_parts import ModelParts
from lmforge.io.weight_names import Row, expand_rows
from lmforge.io.weight_names import row as _r

if TYPE_CHECKING:
    import torch
    from torch import nn

GGUF_MAGIC = b"GGUF"

# Bump when the name table or the permutation changes: cached weights made by older code are then ignored.
CONVERSION_VERSION = "2"

SUPPORTED_ARCHITECTURES = ("llama",)
_INFO_KEY = "lmforge.gguf_info"  # cache-entry metadata: config, tokenizer and generation ids as JSON

# GGUF metadata key (after the "<arch>." prefix) → GPTConfig field. Keys marked required must be present.
CONFIG_KEYS: dict[str, tuple[str, bool]] = {
    "block_count": ("n_layer", True),
    "embedding_length": ("n_embd", True),
    "attention.head_count": ("n_head", True),
    "attention.head_count_kv": ("n_kv_head", False),
    "attention.key_length": ("head_dim", False),  # only when it is not n_embd / n_head (e.g. Mistral Nemo)
    "feed_forward_length": ("ffn_hidden", True),
    "context_length": ("block_size", True),
    "rope.freq_base": ("rope_theta", False),
    "attention.layer_norm_rms_epsilon": ("norm_eps", False),
}

# lmforge parameter ← GGUF tensor(s) ("{i}" is the block index). lmforge fuses Q|K|V into one ``qkv`` matrix and
# gate|up into one ``gate_up`` matrix (one matmul instead of three/two): the GGUF tensors are stacked along the rows
# in the order listed.
TENSOR_NAMES: list[Row] = [
    _r("wte.weight", "token_embd.weight"),
    _r("norm_f.weight", "output_norm.weight"),
    _r("lm_head.weight", "output.weight"),
    _r("blocks.{i}.norm_attn.weight", "blk.{i}.attn_norm.weight"),
    _r("blocks.{i}.attn.qkv.weight", "blk.{i}.attn_q.weight", "blk.{i}.attn_k.weight", "blk.{i}.attn_v.weight"),
    _r("blocks.{i}.attn.proj.weight", "blk.{i}.attn_output.weight"),
    _r("blocks.{i}.norm_mlp.weight", "blk.{i}.ffn_norm.weight"),
    _r("blocks.{i}.mlp.gate_up.weight", "blk.{i}.ffn_gate.weight", "blk.{i}.ffn_up.weight"),
    _r("blocks.{i}.mlp.proj.weight", "blk.{i}.ffn_down.weight"),
]

# How text is cut before BPE, per llama.cpp pre-tokenizer name (tokenizer.ggml.pre): (regex, individual_digits),
# as in the models' own tokenizer.json files. individual_digits: every digit is cut apart FIRST, then the regex
# runs on what is left (SmolLM, StarCoder). Unknown names fall back to GPT-2's split, with a warning.
_GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_LLAMA3_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
PRE_TOKENIZERS: dict[str, tuple[str, bool]] = {
    "default": (_GPT2_SPLIT, False),
    "gpt2": (_GPT2_SPLIT, False),
    "gpt-2": (_GPT2_SPLIT, False),
    "smollm": (_GPT2_SPLIT, True),
    "starcoder": (_GPT2_SPLIT, True),
    "refact": (_GPT2_SPLIT, True),
    "llama3": (_LLAMA3_SPLIT, False),
    "llama-v3": (_LLAMA3_SPLIT, False),
    "llama-bpe": (_LLAMA3_SPLIT, False),
    "qwen2": (_QWEN2_SPLIT, False),
}

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type)
TOKEN_TYPE_NORMAL, TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED = 1, 3, 4


@dataclass
class GGUFFile:
    """An opened GGUF file: its metadata as plain Python values and its tensors (still quantized, memory-mapped)."""

    path: Path
    metadata: dict[str, Any]
    tensors: dict[str, Any]  # name -> gguf.ReaderTensor

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))


def open_gguf(path: str | os.PathLike) -> GGUFFile:
    """Open and check a GGUF file; a missing, foreign or truncated file raises :class:`FormatError` naming it."""
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such GGUF file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise FormatError(f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")
    try:
        reader = GGUFReader(path)
    except (ValueError, IndexError, KeyError, OverflowError, UnicodeDecodeError) as e:
        # The reader memory-maps the file and fails deep inside numpy when it ends early.
        raise FormatError(f"{path}: truncated or corrupt GGUF file ({type(e).__name__}: {e})") from None
    size = path.stat().st_size
    tensors = {}
    for t in reader.tensors:
        end = int(t.data_offset) + int(t.n_bytes)
        if end > size:
            raise FormatError(
                f"{path}: truncated GGUF file: tensor {t.name!r} needs bytes up to {end}, the file has {size}"
            )
        tensors[t.name] = t
    metadata = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue  # header bookkeeping (version, counts)
        try:
            metadata[key] = field.contents()
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            raise FormatError(f"{path}: cannot read metadata field {key!r} ({e})") from None
    return GGUFFile(path=path, metadata=metadata, tensors=tensors)


def gguf_config_kwargs(gf: GGUFFile) -> dict[str, Any]:
    """GPTConfig keyword arguments for a Llama-family GGUF file.

    >>> # {'llama.block_count': 30, 'llama.embedding_length': 576, ...} → {'n_layer': 30, 'n_embd': 576, ...}
    """
    arch = gf.architecture
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ConfigError(
            f"{gf.path}: general.architecture is {arch!r}; lmforge imports GGUF architectures {SUPPORTED_ARCHITECTURES}"
        )
    meta = gf.metadata
    kwargs: dict[str, Any] = {}
    for key, (field, required) in CONFIG_KEYS.items():
        full = f"{arch}.{key}"
        if full in meta:
            value = meta[full]
            kwargs[field] = float(value) if isinstance(value, float) else int(value)
        elif required:
            raise FormatError(f"{gf.path}: metadata field {full!r} is missing")
    kwargs.setdefault("n_kv_head", kwargs["n_head"])
    if "token_embd.weight" not in gf.tensors:
        raise FormatError(f"{gf.path}: tensor 'token_embd.weight' is missing")
    kwargs["vocab_size"] = int(gf.tensors["token_embd.weight"].shape[-1])
    head_dim = kwargs.setdefault("head_dim", kwargs["n_embd"] // kwargs["n_head"])
    rope_dims = meta.get(f"{arch}.rope.dimension_count", head_dim)
    if rope_dims != head_dim:
        raise ConfigError(f"{gf.path}: {arch}.rope.dimension_count={rope_dims}: only full-width RoPE "
                          f"(= head size {head_dim}) is supported")
    for key in (f"{arch}.attention.sliding_window", f"{arch}.attention.sliding_window_pattern"):
        if key in meta:  # llama.cpp's llama graph has no sliding window: honouring it would diverge from llama.cpp
            raise ConfigError(f"{gf.path}: metadata {key!r} is not supported for architecture {arch!r}")
    scaling = gguf_rope_scaling(gf, head_dim, kwargs.get("rope_theta", 10000.0), kwargs["block_size"])
    if scaling is not None:
        kwargs["rope_scaling"] = scaling
    # The Llama family: RoPE, RMSNorm, SwiGLU, no biases; the head shares the embedding when the file has no
    # separate output.weight.
    kwargs.update(
        pos="rope", norm="rms", mlp="swiglu", bias=False, tie_embeddings="output.weight" not in gf.tensors
    )
    return kwargs


# {arch}.rope.scaling.<key> → rope_scaling field (Hugging Face ``rope_parameters`` names), per scaling type.
# "finetuned" only records how the model was trained; it changes nothing at inference.
ROPE_SCALING_KEYS: dict[str, dict[str, str | None]] = {
    "linear": {"factor": "factor", "finetuned": None},
    "yarn": {"factor": "factor", "original_context_length": "original_max_position_embeddings",
             "yarn_beta_fast": "beta_fast", "yarn_beta_slow": "beta_slow", "finetuned": None},
}
ROPE_FREQS_TENSOR = "rope_freqs.weight"  # Llama 3.1: per-frequency divisors of the rotation speeds


def gguf_rope_scaling(gf: GGUFFile, head_dim: int, theta: float, block_size: int) -> dict | None:
    """The ``rope_scaling`` dict (``None``: plain RoPE) from ``{arch}.rope.scaling.*`` metadata or from a
    ``rope_freqs.weight`` tensor, with the meaning llama.cpp gives them: a factor without a type is linear (and
    ``rope.scale_linear`` is its old name), type "none" never scales, a yarn original context defaults to the
    context length. Keys lmforge does not implement raise a :class:`ConfigError` naming them.

    >>> # {'llama.rope.scaling.type': 'yarn', 'llama.rope.scaling.factor': 4.0,
    >>> #  'llama.rope.scaling.original_context_length': 32} → {'rope_type': 'yarn', 'factor': 4.0,
    >>> #                                                        'original_max_position_embeddings': 32}
    """
    arch, meta = gf.architecture, gf.metadata
    prefix = f"{arch}.rope.scaling."
    present = sorted(k for k in meta if k.startswith(prefix) and k != prefix + "type")
    # Older files name the linear factor "{arch}.rope.scale_linear"; a factor of 0 means "not set" to llama.cpp.
    factor = meta.get(prefix + "factor", meta.get(f"{arch}.rope.scale_linear"))
    unscaled = factor is None or float(factor) in (0.0, 1.0)
    # llama.cpp's default scaling type is linear: a factor without a type scales linearly.
    rope_type = str(meta.get(prefix + "type", "none" if unscaled else "linear"))
    freqs = gf.tensors.get(ROPE_FREQS_TENSOR)
    if rope_type in ("none", "") or (unscaled and rope_type in ROPE_SCALING_KEYS):
        # llama.cpp never scales under type "none" (whatever the factor says), but it always divides the
        # rotation speeds by rope_freqs when the file has that tensor.
        return None if freqs is None else rope_scaling_from_freq_factors(gf, freqs, head_dim, theta)
    if rope_type not in ROPE_SCALING_KEYS:
        raise ConfigError(f"{gf.path}: metadata {prefix + 'type'!r} = {rope_type!r} is not supported "
                          f"(supported: none, {', '.join(ROPE_SCALING_KEYS)})")
    if freqs is not None:
        raise ConfigError(f"{gf.path}: tensor {ROPE_FREQS_TENSOR!r} together with {prefix}type={rope_type!r} "
                          "is not supported")
    fields = ROPE_SCALING_KEYS[rope_type]
    scaling: dict[str, Any] = {"rope_type": rope_type, "factor": float(factor)}
    for key in present:
        suffix = key[len(prefix):]
        if suffix not in fields:
            raise ConfigError(f"{gf.path}: metadata {key!r} is not supported with {prefix}type={rope_type!r}")
        if fields[suffix] is not None:
            value = meta[key]
            scaling[fields[suffix]] = int(value) if suffix == "original_context_length" else float(value)
    if rope_type == "yarn" and not scaling.get("original_max_position_embeddings"):
        scaling["original_max_position_embeddings"] = block_size  # llama.cpp: n_ctx_orig defaults to n_ctx_train
    return scaling


def rope_scaling_from_freq_factors(gf: GGUFFile, tensor: Any, head_dim: int, theta: float) -> dict | None:
    """The ``rope_scaling`` dict whose rotation speeds are llama.cpp's ``inv_freq / rope_freqs``.

    llama.cpp's converter writes Llama 3.1's "llama3" schedule as this tensor (1 for fast rotations, ``factor``
    for slow ones, a blend between), not as metadata. The schedule depends only on ``factor`` and the two band
    edges, so they are read back off the tensor and the result is CHECKED against every divisor: a tensor that
    is not a llama3 (or constant, i.e. linear) schedule raises :class:`ConfigError`.

    >>> # rope_freqs [1, 1, 2.29, 8, 8] → {'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': …, …}
    """
    import torch
    from gguf.quants import dequantize

    from lmforge.nn.positions import llama3_inv_freq, rope_inv_freq

    divisors = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float64).reshape(-1)
    where = f"{gf.path}: tensor {ROPE_FREQS_TENSOR!r}"
    if divisors.shape != (head_dim // 2,) or not np.all(np.isfinite(divisors)) or np.any(divisors <= 0):
        raise ConfigError(f"{where}: expected {head_dim // 2} positive divisors (one per rotation), "
                          f"got shape {tuple(tensor.shape)}")
    rtol = 1e-5
    factor = float(divisors.max())
    if np.allclose(divisors, 1.0, rtol=0, atol=rtol):
        return None
    if np.allclose(divisors, factor, rtol=rtol, atol=0):
        return {"rope_type": "linear", "factor": factor}
    inv_freq = rope_inv_freq(head_dim, theta).double().numpy()
    turns = inv_freq / (2 * math.pi)  # full turns per position: the llama3 bands are intervals of this
    fast = np.isclose(divisors, 1.0, rtol=0, atol=rtol)
    slow = np.isclose(divisors, factor, rtol=rtol, atol=0)
    blend = ~fast & ~slow
    # blended: 1/divisor = (1 - s)/factor + s with s rising linearly in `turns` from 0 (slow edge) to 1 (fast edge)
    s = (1.0 / divisors - 1.0 / factor) / (1.0 - 1.0 / factor)
    slow_edge_max = turns[slow].max() if slow.any() else 0.0
    fast_edge_min = turns[fast].min() if fast.any() else turns.max() * 2
    if blend.sum() >= 2:
        i, j = np.flatnonzero(blend)[[0, -1]]
        slope = (s[i] - s[j]) / (turns[i] - turns[j])
        low, high = turns[i] - s[i] / slope, turns[i] + (1 - s[i]) / slope  # where s = 0 and s = 1
    elif blend.sum() == 1:
        (k,) = np.flatnonzero(blend)
        width = 0.5 * min((turns[k] - slow_edge_max) / max(s[k], 1e-12),
                          (fast_edge_min - turns[k]) / max(1 - s[k], 1e-12))
        low, high = turns[k] - s[k] * width, turns[k] + (1 - s[k]) * width
    else:
        low, high = np.interp([1 / 3, 2 / 3], [0, 1], [slow_edge_max, fast_edge_min])
    if not 0 < low < high:
        raise ConfigError(f"{where}: the divisors are not a llama3 schedule (1, a blend, then factor)")
    # llama3 bands: wavelength > original / low_freq_factor is slow, < original / high_freq_factor is fast
    original = max(1, round(1 / low))
    scaling = {"rope_type": "llama3", "factor": factor, "low_freq_factor": float(original * low),
               "high_freq_factor": float(original * high), "original_max_position_embeddings": int(original)}
    ours = llama3_inv_freq(torch.from_numpy(inv_freq), factor, scaling["low_freq_factor"],
                           scaling["high_freq_factor"], original).numpy()
    if not np.allclose(ours, inv_freq / divisors, rtol=rtol, atol=0):
        raise ConfigError(f"{where}: the divisors are not a llama3 schedule (1, a blend, then factor); "
                          "lmforge cannot represent them")
    return scaling


def unpermute_rope_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row order. Per head, llama.cpp interleaves the two rotated halves
    (rows ``0, D/2, 1, D/2+1, …``); lmforge keeps them as halves (rows ``0, 1, …, D/2-1 | D/2, …``).

    >>> unpermute_rope_rows(np.array([[0], [2], [1], [3]]), n_heads=1)[:, 0]   # halves [0, 1 | 2, 3]
    array([0, 1, 2, 3])
    """
    rows = weight.shape[0]
    head_dim = rows // n_heads
    # (rows, C) → (H, D/2, 2, C): the pair index is the fast one in llama.cpp's order
    w = weight.reshape(n_heads, head_dim // 2, 2, *weight.shape[1:])
    return w.swapaxes(1, 2).reshape(weight.shape)


def _name_table(n_layer: int) -> dict[str, tuple[str, int]]:
    """GGUF tensor name → (lmforge parameter, part index in the stack), from :data:`TENSOR_NAMES` for every block."""
    return {theirs: (r.ours, part) for r in expand_rows(TENSOR_NAMES, n_layer) for part, theirs in enumerate(r.theirs)}


def gguf_state_dict(gf: GGUFFile, config_kwargs: dict[str, Any], dtype: torch.dtype | None = None
                    ) -> dict[str, torch.Tensor]:
    """Dequantize every tensor, undo the RoPE row order, and assemble lmforge's parameters (fusing Q|K|V and
    gate|up): lmforge name → tensor, matrices ``(out, in)``. A tied LM head is not listed (it IS ``wte``)."""
    import torch
    from gguf.quants import dequantize

    dtype = dtype or torch.float32
    table = _name_table(config_kwargs["n_layer"])
    unknown = sorted(set(gf.tensors) - set(table) - {ROPE_FREQS_TENSOR})  # rope_freqs: read into the config
    if unknown:
        raise FormatError(f"{gf.path}: tensors a {gf.architecture} model does not have: {unknown[:5]}")
    parts: dict[str, dict[int, np.ndarray]] = {}
    for name, t in gf.tensors.items():
        if name == ROPE_FREQS_TENSOR:
            continue
        try:
            array = dequantize(t.data, t.tensor_type)  # float32, torch layout (out, in)
        except NotImplementedError as e:
            raise FormatError(f"{gf.path}: tensor {name!r}: {t.tensor_type.name} cannot be dequantized ({e})"
                              ) from None
        if name.endswith(".attn_q.weight"):
            array = unpermute_rope_rows(array, config_kwargs["n_head"])
        elif name.endswith(".attn_k.weight"):
            array = unpermute_rope_rows(array, config_kwargs["n_kv_head"])
        ours, part = table[name]
        parts.setdefault(ours, {})[part] = array
    expected_parts: dict[str, int] = {}
    for ours, part in table.values():
        expected_parts[ours] = max(expected_parts.get(ours, 0), part + 1)
    state: dict[str, torch.Tensor] = {}
    for ours, n_parts in expected_parts.items():
        got = parts.get(ours, {})
        if ours == "lm_head.weight" and not got:
            continue  # tied to the embedding
        if len(got) != n_parts:
            sources = [g for g, (o, _) in table.items() if o == ours and g not in gf.tensors]
            raise FormatError(f"{gf.path}: tensor(s) {sources} missing (needed for {ours})")
        stacked = np.concatenate([got[k] for k in range(n_parts)], axis=0) if n_parts > 1 else got[0]
        state[ours] = torch.from_numpy(np.array(stacked, dtype=np.float32)).to(dtype)
    return state


def gguf_tokenizer_spec(gf: GGUFFile) -> dict[str, Any]:
    """Everything needed to build the byte-level BPE tokenizer the file describes, as plain Python values.

    Returns ``vocab`` (token → id), ``merges`` (pairs, best first), ``special_tokens`` (control and user-defined
    tokens → id, matched whole in the text), ``pattern`` and ``individual_digits`` (the pre-tokenizer),
    ``bos_token``/``eos_token``/``pad_token``, ``add_bos``/``add_eos`` and ``chat_template``.
    """
    meta = gf.metadata
    model = meta.get("tokenizer.ggml.model")
    if model is None:
        raise FormatError(f"{gf.path}: the file has no tokenizer (metadata 'tokenizer.ggml.model' is missing)")
    if model == "llama":
        return _sentencepiece_spec(gf)
    if model != "gpt2":
        raise ConfigError(f"{gf.path}: tokenizer.ggml.model={model!r}; lmforge reads byte-level BPE ('gpt2') and "
                          "SentencePiece BPE ('llama') tokenizers from GGUF")
    tokens = list(meta.get("tokenizer.ggml.tokens") or [])
    if not tokens:
        raise FormatError(f"{gf.path}: metadata 'tokenizer.ggml.tokens' is missing or empty")
    token_types = list(meta.get("tokenizer.ggml.token_type") or [TOKEN_TYPE_NORMAL] * len(tokens))
    merges = []
    for i, line in enumerate(meta.get("tokenizer.ggml.merges") or []):
        left, sep, right = line.partition(" ")
        if not sep:
            raise FormatError(f"{gf.path}: tokenizer.ggml.merges[{i}] = {line!r}: expected 'left right'")
        merges.append((left, right))
    vocab = {token: i for i, token in enumerate(tokens)}
    special = {tokens[i]: i for i, kind in enumerate(token_types)
               if kind in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)}
    pre = meta.get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        warnings.warn(f"{gf.path}: unknown pre-tokenizer tokenizer.ggml.pre={pre!r}; splitting text as GPT-2 does",
                      stacklevel=2)
    pattern, individual_digits = PRE_TOKENIZERS.get(pre, PRE_TOKENIZERS["default"])

    def token_of(key: str) -> str | None:
        token_id = meta.get(f"tokenizer.ggml.{key}")
        if token_id is None:
            return None
        if not 0 <= int(token_id) < len(tokens):
            warnings.warn(f"{gf.path}: tokenizer.ggml.{key}={token_id} is outside the vocabulary; ignored",
                          stacklevel=3)
            return None
        return tokens[int(token_id)]

    return {
        "vocab": vocab,
        "merges": merges,
        "special_tokens": special,
        "pattern": pattern,
        "individual_digits": individual_digits,
        "bos_token": token_of("bos_token_id"),
        "eos_token": token_of("eos_token_id"),
        "pad_token": token_of("padding_token_id"),
        "add_bos": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "chat_template": meta.get("tokenizer.chat_template"),
    }


def merges_from_scores(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
    """SentencePiece BPE merges from token scores, best first, as transformers rebuilds them for GGUF files: every
    split of a token into two vocabulary tokens is a merge ranked by the token's score (higher first; then longer
    left part, then longer right part; within a token, by the two parts' ids).

    >>> merges_from_scores(["a", "b", "c", "ab", "abc"], [0.0, 0.0, 0.0, -1.0, -2.0])
    [('a', 'b'), ('ab', 'c')]
    """
    vocab = {t: i for i, t in enumerate(tokens)}
    score_of = dict(zip(tokens, scores, strict=True))  # a token listed twice: first position, last score
    ranked = []
    for token, score in score_of.items():
        splits = [(token[:k], token[k:]) for k in range(1, len(token)) if token[:k] in vocab and token[k:] in vocab]
        splits.sort(key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
        ranked.extend((left, right, score) for left, right in splits)
    ranked.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)  # stable: ties keep the order above
    return [(left, right) for left, right, _ in ranked]


def _sentencepiece_spec(gf: GGUFFile) -> dict[str, Any]:
    """A ``tokenizer.ggml.model = "llama"`` vocabulary as the HF ``tokenizer.json`` transformers builds for it:
    character-level BPE with byte fallback (merges from the scores), Metaspace ``▁`` prepended to the first word,
    control tokens special, user-defined tokens matched whole, BOS added unless the file says otherwise."""
    meta = gf.metadata
    tokens = list(meta.get("tokenizer.ggml.tokens") or [])
    if not tokens:
        raise FormatError(f"{gf.path}: metadata 'tokenizer.ggml.tokens' is missing or empty")
    scores = [float(x) for x in meta.get("tokenizer.ggml.scores") or []]
    token_types = list(meta.get("tokenizer.ggml.token_type") or [TOKEN_TYPE_NORMAL] * len(tokens))
    if len(scores) != len(tokens) or len(token_types) != len(tokens):
        raise FormatError(f"{gf.path}: tokenizer.ggml.scores / token_type should have one entry per token "
                          f"({len(tokens)}), got {len(scores)} / {len(token_types)}")
    if meta.get("tokenizer.ggml.merges"):
        merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    else:
        merges = merges_from_scores(tokens, scores)
    vocab = {t: i for i, t in enumerate(tokens)}

    def token_of(key: str) -> str | None:
        token_id = meta.get(f"tokenizer.ggml.{key}")
        return tokens[int(token_id)] if token_id is not None and 0 <= int(token_id) < len(tokens) else None

    bos, eos, unk = token_of("bos_token_id"), token_of("eos_token_id"), token_of("unknown_token_id")
    added = {}
    for i, kind in enumerate(token_types):
        if kind in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED) or tokens[i] == unk:
            added[i] = {"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
                        "normalized": False, "special": kind != TOKEN_TYPE_USER_DEFINED}
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", True))  # llama.cpp's default for these vocabularies
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    ends = [(t, flag) for t, flag in ((bos, add_bos), (eos, add_eos)) if t is not None and flag]
    post = None
    if ends:
        def spell(type_id: int, part: str) -> list[dict]:
            items = [{"SpecialToken": {"id": bos, "type_id": type_id}}] if add_bos and bos else []
            items.append({"Sequence": {"id": part, "type_id": type_id}})
            return items + ([{"SpecialToken": {"id": eos, "type_id": type_id}}] if add_eos and eos else [])

        post = {"type": "TemplateProcessing", "single": spell(0, "A"), "pair": spell(0, "A") + spell(1, "B"),
                "special_tokens": {t: {"id": t, "ids": [vocab[t]], "tokens": [t]} for t, _ in ends}}
    hf_json = {
        "added_tokens": [added[i] for i in sorted(added)], "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
        "post_processor": post,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": True, "byte_fallback": True,
                  "ignore_merges": False, "vocab": vocab, "merges": [list(m) for m in merges]},
    }
    roles = {"bos": bos, "eos": eos, "unk": unk, "pad": token_of("padding_token_id")}
    return {"model": "llama", "hf_json": hf_json, "roles": roles, "chat_template": meta.get("tokenizer.chat_template")}


def tokenizer_from_spec(spec: dict[str, Any]) -> Any:
    """An lmforge ``Tokenizer`` (with its ``chat_template``) from :func:`gguf_tokenizer_spec`'s dict."""
    from lmforge.tokenizers import Tokenizer

    if spec.get("model") == "llama":
        tokenizer = Tokenizer.from_hf_json(spec["hf_json"], where="GGUF tokenizer")
        for role, token in spec["roles"].items():
            if token is not None:
                setattr(tokenizer, f"{role}_token", token)
        tokenizer.chat_template = spec["chat_template"]
        return tokenizer
    tokenizer = Tokenizer.from_byte_level_bpe(
        spec["vocab"], [tuple(m) for m in spec["merges"]], pattern=spec["pattern"],
        individual_digits=spec["individual_digits"], special_tokens=spec["special_tokens"],
        bos_token=spec["bos_token"], eos_token=spec["eos_token"], pad_token=spec["pad_token"],
        add_bos=spec["add_bos"], add_eos=spec["add_eos"],
    )
    tokenizer.chat_template = spec["chat_template"]
    return tokenizer


def gguf_tokenizer(gf: GGUFFile) -> Any:
    """The file's tokenizer as an lmforge ``Tokenizer``, with its ``chat_template`` attached."""
    return tokenizer_from_spec(gguf_tokenizer_spec(gf))


def _generation_config(gf: GGUFFile) -> dict[str, Any]:
    """bos/eos/pad ids as ``lmforge.generate`` expects them (``eos_token_id`` is a list)."""
    meta = gf.metadata
    out: dict[str, Any] = {}
    for ours, key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                      ("pad_token_id", "padding_token_id")):
        if f"tokenizer.ggml.{key}" in meta:
            out[ours] = int(meta[f"tokenizer.ggml.{key}"])
    if "eos_token_id" in out:
        out["eos_token_id"] = [out["eos_token_id"]]
    return out


def convert_gguf(path: str | os.PathLike, dtype: torch.dtype | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Everything lmforge needs from a GGUF file: ``(state dict, {"config": GPTConfig kwargs, "tokenizer":
    tokenizer spec, "generation": bos/eos/pad ids})``. Config and tokenizer are checked before the (slow)
    dequantization, so a bad file fails fast."""
    gf = open_gguf(path)
    info = {
        "config": gguf_config_kwargs(gf), "tokenizer": gguf_tokenizer_spec(gf), "generation": _generation_config(gf),
    }
    return gguf_state_dict(gf, info["config"], dtype), info


def load_gguf(path: str | os.PathLike, *, dtype: torch.dtype | None = None, cache: bool = True,
              quantized: bool = True, **_: Any) -> ModelParts:
    """The loader for a ``.gguf`` file: model, tokenizer (and its chat template) and generation ids, all from the one
    file (:func:`lmforge.load` wraps the parts into an ``LM``).

    ``quantized=True`` (the default) keeps quantized tensors packed (:func:`load_gguf_quantized`; no cache).
    ``quantized=False`` dequantizes every tensor to float32. The result of :func:`convert_gguf` is cached (see
    :mod:`lmforge.io.cache`; ``cache=False`` skips it), keyed by
    the file's SHA-256: a second load of the same bytes reads one safetensors file and never parses the GGUF.
    """
    from lmforge.io.cache import cached, file_sha256
    from lmforge.models.gpt import GPT, GPTConfig

    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such GGUF file")
    if quantized:
        return load_gguf_quantized(path, dtype=dtype)

    def make() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        state, info = convert_gguf(path)
        return state, {_INFO_KEY: json.dumps(info), "source": str(path.resolve())}  # shown by `lmforge cache list`

    state, metadata = cached(f"{file_sha256(path)}-v{CONVERSION_VERSION}", make, kind="gguf", use_cache=cache)
    info = json.loads(metadata[_INFO_KEY])
    try:
        config = GPTConfig(**info["config"])
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    model = GPT.from_state_dict(config, state, str(path), dtype=dtype).eval()
    return ModelParts(model=model, tokenizer=tokenizer_from_spec(info["tokenizer"]), config=config,
                      generation_config=info["generation"], path=path)


# ---------------------------------------------------------------- keeping quantized weights packed
# ``lmforge.load("model.gguf")`` keeping the weights quantized: each GGUF tensor becomes the layer that holds its
# blocks (:class:`~lmforge.nn.quantized.QuantizedLinear`, :class:`~lmforge.nn.quantized.QuantizedEmbedding`) instead
# of a float32 matrix, so the model in memory is about the size of the file.
#
# Per tensor (after the name table and RoPE row order of :mod:`lmforge.io.gguf`, which apply to packed rows just as
# to float rows, since every GGUF block lies inside one row):
#
# - Q8_0, Q4_0, Q4_1, Q4_K, Q6_K weight matrices stay packed; fused matrices (Q|K|V, gate|up) stay packed when all
#   their parts share one type, and are dequantized to float otherwise (e.g. a Q4_K_M file's Q6_K ``attn_v``);
# - the token embedding stays packed when its rows are 8-bit (Q8_0, Q6_K) — a tied LM head then reads the same
#   bytes — and is dequantized otherwise (4-bit rows cannot be gathered by the kernels);
# - F32 / F16 / BF16 tensors (norms) are float; any other quantization type is a :class:`FormatError` naming the
#   type and the tensor (``quantized=False`` dequantizes it through ``gguf``).
#
# No cache: reading the blocks out of the memory-mapped file takes about as long as reading a cache entry.

# GGML type name → lmforge qtype kept packed
KEPT_TYPES = {"Q8_0": "q8_0", "Q4_0": "q4_0", "Q4_1": "q4_1", "Q4_K": "q4_k", "Q6_K": "q6_k"}
FLOAT_TYPES = ("F32", "F16", "BF16")


def _rows(name: str, tensor: Any, config: dict[str, Any]) -> np.ndarray:
    """A tensor's rows as stored (blocks ``(N, row_bytes)`` or floats ``(N, K)``), RoPE rows in lmforge's order."""

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
    import torch

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
        if qtype and isinstance(target, (torch.nn.Linear, torch.nn.Embedding)):
            raw = np.concatenate([_rows(n, t, config_kwargs) for n, t in zip(names, tensors, strict=True)])
            layer = QuantizedLinear.from_gguf(np.ascontiguousarray(raw), qtype, in_features=config.n_embd
                                              if ours == "wte.weight" else target.in_features)
            if layer.out_features != target.weight.shape[0]:
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

    path = Path(path)
    gf = open_gguf(path)
    config_kwargs = gguf_config_kwargs(gf)
    spec = gguf_tokenizer_spec(gf)
    model = quantized_gpt_from_gguf(gf, config_kwargs, dtype)
    return ModelParts(model=model, tokenizer=tokenizer_from_spec(spec), config=model.config,
              generation_config=_generation_config(gf), path=path)
