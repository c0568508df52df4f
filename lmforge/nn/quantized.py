"""Linear and embedding layers whose weights stay quantized: 4 or 8 bits per weight plus a scale per small group,
multiplied without ever materialising the float32 matrix when only a few rows come in (decoding).

Why: decoding one token reads every weight once, so its speed is memory bandwidth / bytes of weights. A 4-bit
weight is 1/8 of a float32 one.

Formats (``qtype``) and the in-memory layout each becomes (``w`` is one weight, ``g`` the group size along a row):

=========  ======================================  ==========  ===============================================
qtype      on disk (llama.cpp / lmforge)           group       in memory → kernel
=========  ======================================  ==========  ===============================================
``q8_0``   GGUF block: fp16 ``d``, 32 × int8       32          int8 ``q`` + fp32 ``scale``: ``w = q·scale``
``q6_k``   GGUF super-block of 256: 6-bit ``q``,    16          int8 ``q - 32`` + fp32 ``scale = d·sc`` (+ the
           int8 ``sc`` per 16, fp16 ``d``                      block's 18 scale bytes, to write it back)
``q4_0``   GGUF block: fp16 ``d``, 32 nibbles      32          nibbles + ``scale = d``, ``zero = -8d``
``q4_1``   GGUF block: fp16 ``d``, ``m``, nibbles   32          nibbles + ``scale = d``, ``zero = m``
``q4_k``   GGUF super-block of 256: fp16 ``d``,     32          nibbles + ``scale = d·sc``, ``zero = -dmin·m``
           ``dmin``, 6-bit ``sc``/``m`` per 32                  (+ the block's 16 header bytes)
``int8``   lmforge: int8 per row, fp32 scale       the row     int8 ``q`` + fp32 ``scale`` (symmetric)
``int4``   lmforge: nibbles, fp32 scale + zero     32 – 256    nibbles + ``scale``, ``zero`` (min–max)
=========  ======================================  ==========  ===============================================

So there are two kernels: 4-bit ``w = q·scale + zero`` and 8-bit ``w = q·scale`` (numba, in
:mod:`lmforge.nn._quantized_numba`), both exact in float32 for every format above. What ``state_dict`` saves is the
portable layout (plain nibbles: byte ``j`` of a row holds weights ``2j`` in the low and ``2j+1`` in the high
nibble; int8; float32 scales), never torch's CPU-specific int4 packing; :func:`to_gguf_blocks` rebuilds the exact
GGUF bytes. In memory the same bytes sit in row tiles of :data:`TILE` rows (:func:`tile_rows`), the order the
kernels vectorize over; ``state_dict`` / ``load_state_dict`` / :meth:`QuantizedLinear.parts` convert.
Why numba and not ``torch.ops.aten._weight_int4pack_mm_for_cpu`` / ``_weight_int8pack_mm``:
on these CPUs their float32 paths are several times slower than a plain float32 matmul (only bfloat16 is fast,
and bfloat16 activations move logits by ~1e-2, far from fp32) — see ``docs/quantization.md``;
:func:`use_torch_bf16_int4` opts a model's 4-bit layers into torch's fast bfloat16 op anyway.
:func:`use_int8_activations` opts them into integer dot products with int8-rounded activations, as llama.cpp does.

Long prompts (more than :data:`DECODE_MAX_ROWS` rows) dequantize the layer once and use the float32 GEMM,
which is compute-bound there and strong in PyTorch.

A decoding step (one new token in each of up to :data:`DECODE_MAX_ROWS` rows) through Llama-shaped blocks whose
matrices are all packed runs one numba call per block (:func:`packed_decode_blocks`, which
:class:`~lmforge.models.gpt.GPT` calls), not ~25 torch ops and 4 kernel calls.

The readable reference dequantizers (:func:`dequantize_gguf_reference`, :func:`dequantize_reference`) are what
the tests hold the kernels and the converters to.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmforge.errors import ConfigError, FormatError
from lmforge.nn.attention import Attention
from lmforge.nn.feedforward import FeedForward
from lmforge.nn.kv_cache import KVCache
from lmforge.nn.norms import RMSNorm

DECODE_MAX_ROWS = 8  # up to this many rows of x: the packed kernel; more: dequantize once + float32 GEMM
INT4_GROUPS = (32, 64, 128, 256)


@dataclass(frozen=True)
class QuantFormat:
    """One quantization format: ``bits`` of the in-memory ``q`` (4: nibbles, 8: int8), ``group`` (weights per
    scale; 0 = the whole row), ``block`` (weights per GGUF block; 0 = not a GGUF type), ``block_bytes``,
    ``meta_bytes`` (header bytes per GGUF block kept to write the exact block back; 0 when scale/zero suffice)."""

    name: str
    bits: int
    group: int
    block: int = 0
    block_bytes: int = 0
    meta_bytes: int = 0


FORMATS: dict[str, QuantFormat] = {
    "q8_0": QuantFormat("q8_0", 8, 32, 32, 34),
    "q6_k": QuantFormat("q6_k", 8, 16, 256, 210, 18),
    "q4_0": QuantFormat("q4_0", 4, 32, 32, 18),
    "q4_1": QuantFormat("q4_1", 4, 32, 32, 20),
    "q4_k": QuantFormat("q4_k", 4, 32, 256, 144, 16),
    "int8": QuantFormat("int8", 8, 0),
    "int4": QuantFormat("int4", 4, 128),  # default group; 32, 64, 128 or 256
}
GGUF_QTYPES = tuple(name for name, f in FORMATS.items() if f.block)


def check_format(qtype: str, in_features: int, group: int | None = None) -> int:
    """The group size for ``qtype`` on rows of ``in_features`` (a :class:`ConfigError` when it does not fit).

    >>> check_format("int4", 576, 64), check_format("int8", 576), check_format("q4_k", 512)
    (64, 576, 32)
    """
    if qtype not in FORMATS:
        raise ConfigError(f"quantization: unknown format {qtype!r} (expected one of {', '.join(FORMATS)})")
    fmt = FORMATS[qtype]
    if group is not None and qtype != "int4" and group != (fmt.group or in_features):
        raise ConfigError(f"quantization {qtype}: the group size is fixed ({fmt.group or 'the row'}), got {group}")
    if qtype == "int4":
        group = group or fmt.group
        if group not in INT4_GROUPS:
            raise ConfigError(f"quantization int4: group size must be one of {INT4_GROUPS}, got {group}")
    group = group or fmt.group or in_features
    unit = max(group, fmt.block)
    if in_features % unit:
        raise ConfigError(f"quantization {qtype}: a row of {in_features} weights is not a whole number of "
                          f"{'blocks' if fmt.block else 'groups'} of {unit}")
    return group


# ---------------------------------------------------------------------------------------------------------------
# Reference dequantizers: one readable loop per GGUF format, as ggml-quants.c writes them.

def _f16(raw: np.ndarray) -> np.ndarray:
    """Two little-endian bytes per value → float32. ``_f16(np.array([[0, 60]], np.uint8))`` → ``[[1.0]]``."""
    return np.ascontiguousarray(raw).view(np.float16).astype(np.float32)


def q4_k_scales(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K's 12 scale bytes per super-block ``(..., 12)`` → the 8 six-bit scales and 8 six-bit mins ``(..., 8)``.

    Bytes 0–3 hold sc[0..3] (low 6 bits) and the top 2 bits of sc[4..7]; bytes 4–7 the same for the mins;
    bytes 8–11 the low 4 bits of sc[4..7] (low nibble) and m[4..7] (high nibble).
    """
    s = scales.astype(np.uint8)
    sc = np.concatenate([s[..., 0:4] & 63, (s[..., 8:12] & 15) | ((s[..., 0:4] >> 6) << 4)], axis=-1)
    mn = np.concatenate([s[..., 4:8] & 63, (s[..., 8:12] >> 4) | ((s[..., 4:8] >> 6) << 4)], axis=-1)
    return sc, mn


def dequantize_gguf_reference(raw: np.ndarray, qtype: str) -> np.ndarray:
    """GGUF blocks ``(N, row_bytes) uint8`` → float32 weights ``(N, K)``, block by block as ggml does.

    >>> blocks = np.zeros((1, 34), np.uint8); blocks[0, 1] = 60; blocks[0, 2:] = 2   # d = 1.0, q = 2
    >>> dequantize_gguf_reference(blocks, "q8_0")[0, :3]
    array([2., 2., 2.], dtype=float32)
    """
    fmt = FORMATS[qtype]
    n = raw.shape[0]
    b = raw.reshape(n, -1, fmt.block_bytes)  # (N, blocks per row, bytes per block)
    if qtype == "q8_0":
        d = _f16(b[..., 0:2])  # (N, nb, 1)
        q = b[..., 2:34].view(np.int8).astype(np.float32)  # (N, nb, 32)
        return (d * q).reshape(n, -1)
    if qtype in ("q4_0", "q4_1"):
        off = 2 if qtype == "q4_0" else 4
        d = _f16(b[..., 0:2])
        qs = b[..., off:off + 16]
        q = np.concatenate([qs & 15, qs >> 4], axis=-1).astype(np.float32)  # low nibbles: w0..15, high: w16..31
        w = d * (q - 8) if qtype == "q4_0" else d * q + _f16(b[..., 2:4])
        return w.reshape(n, -1)
    if qtype == "q4_k":
        d, dmin = _f16(b[..., 0:2]), _f16(b[..., 2:4])  # (N, nb, 1)
        sc, mn = q4_k_scales(b[..., 4:16])  # (N, nb, 8)
        qs = b[..., 16:144].reshape(n, -1, 4, 32)  # 4 chunks of 32 bytes: 64 weights each
        q = np.stack([qs & 15, qs >> 4], axis=3).reshape(n, -1, 8, 32).astype(np.float32)  # sub-block 2c: low
        w = (d * sc)[..., None] * q - (dmin * mn)[..., None]
        return w.reshape(n, -1)
    if qtype == "q6_k":
        ql, qh = b[..., 0:128], b[..., 128:192]
        sc = b[..., 192:208].view(np.int8).astype(np.float32)  # (N, nb, 16)
        d = _f16(b[..., 208:210])
        out = np.empty((n, b.shape[1], 256), np.float32)
        for half in range(2):  # each half: 64 ql bytes, 32 qh bytes, 8 scales → 128 weights
            lo, hi = ql[..., 64 * half:64 * half + 64], qh[..., 32 * half:32 * half + 32]
            for quarter, (nib, shift) in enumerate([(lo[..., :32] & 15, 0), (lo[..., 32:] & 15, 2),
                                                    (lo[..., :32] >> 4, 4), (lo[..., 32:] >> 4, 6)]):
                q = (nib | (((hi >> shift) & 3) << 4)).astype(np.float32) - 32  # (N, nb, 32)
                first = 128 * half + 32 * quarter
                s = np.repeat(sc[..., 8 * half + 2 * quarter:8 * half + 2 * quarter + 2], 16, axis=-1)
                out[..., first:first + 32] = d * s * q
        return out.reshape(n, -1)
    raise FormatError(f"dequantize: {qtype!r} is not a GGUF block format ({', '.join(GGUF_QTYPES)})")


def dequantize_reference(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int) -> torch.Tensor:
    """The in-memory layout → float32 ``(N, K)``, written out in torch (what the kernels must equal).

    >>> dequantize_reference(torch.tensor([[0x21]], dtype=torch.uint8), torch.tensor([[2.0]]),
    ...                      torch.tensor([[-1.0]]), 4)      # nibbles 1, 2 → 1·2-1, 2·2-1
    tensor([[1., 3.]])
    """
    if bits == 4:
        values = torch.stack([q & 15, q >> 4], dim=-1).reshape(q.shape[0], -1).float()  # (N, K)
    else:
        values = q.float()
    group = values.shape[1] // scale.shape[1]
    w = values * scale.repeat_interleave(group, dim=1)
    return w + zero.repeat_interleave(group, dim=1) if zero is not None else w


# ---------------------------------------------------------------------------------------------------------------
# GGUF blocks ↔ the in-memory layout (exact both ways)

def _pack_nibbles(values: np.ndarray) -> np.ndarray:
    """``(N, K)`` values 0..15 → ``(N, K/2)`` bytes, weight ``2j`` low. ``[[1, 2]]`` → ``[[0x21]]``."""
    return (values[:, 0::2] | (values[:, 1::2] << 4)).astype(np.uint8)


def _unpack_nibbles(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_pack_nibbles`: ``(N, K/2)`` → ``(N, K)`` uint8."""
    return np.stack([packed & 15, packed >> 4], axis=-1).reshape(packed.shape[0], -1)


def from_gguf_blocks(raw: np.ndarray, qtype: str) -> dict[str, np.ndarray]:
    """GGUF blocks ``(N, row_bytes) uint8`` → ``{"q", "scale", ["zero"], ["meta"]}`` numpy arrays.

    ``dequantize_reference`` of the result equals :func:`dequantize_gguf_reference` of ``raw`` exactly (every
    product ``d·sc`` of an fp16 and a ≤ 8-bit integer is exact in float32)."""
    fmt = FORMATS[qtype]
    n = raw.shape[0]
    b = raw.reshape(n, -1, fmt.block_bytes)
    if qtype == "q8_0":
        return {"q": np.ascontiguousarray(b[..., 2:]).view(np.int8).reshape(n, -1),
                "scale": _f16(b[..., 0:2]).reshape(n, -1)}
    if qtype in ("q4_0", "q4_1"):
        off = 2 if qtype == "q4_0" else 4
        qs = b[..., off:off + 16]
        values = np.concatenate([qs & 15, qs >> 4], axis=-1).reshape(n, -1)
        d = _f16(b[..., 0:2]).reshape(n, -1)
        zero = -8 * d if qtype == "q4_0" else _f16(b[..., 2:4]).reshape(n, -1)
        return {"q": _pack_nibbles(values), "scale": d, "zero": zero}
    if qtype == "q4_k":
        d, dmin = _f16(b[..., 0:2]), _f16(b[..., 2:4])
        sc, mn = q4_k_scales(b[..., 4:16])
        qs = b[..., 16:144].reshape(n, -1, 4, 32)
        values = np.stack([qs & 15, qs >> 4], axis=3).reshape(n, -1)
        return {"q": _pack_nibbles(values), "scale": (d * sc).reshape(n, -1),
                "zero": (-(dmin * mn)).reshape(n, -1), "meta": np.ascontiguousarray(b[..., 0:16])}
    if qtype == "q6_k":
        ql, qh = b[..., 0:128].reshape(n, -1, 2, 64), b[..., 128:192].reshape(n, -1, 2, 32)
        low = np.stack([ql[..., :32] & 15, ql[..., 32:] & 15, ql[..., :32] >> 4, ql[..., 32:] >> 4], axis=3)
        high = np.stack([(qh >> s) & 3 for s in (0, 2, 4, 6)], axis=3)  # (N, nb, 2, 4, 32)
        q = ((low | (high << 4)).astype(np.int16) - 32).astype(np.int8).reshape(n, -1)
        sc = b[..., 192:208].view(np.int8).astype(np.float32)
        return {"q": q, "scale": (_f16(b[..., 208:210]) * sc).reshape(n, -1),
                "meta": np.ascontiguousarray(b[..., 192:210])}
    raise FormatError(f"{qtype!r} is not a GGUF block format ({', '.join(GGUF_QTYPES)})")


def to_gguf_blocks(parts: dict[str, np.ndarray], qtype: str) -> np.ndarray:
    """Inverse of :func:`from_gguf_blocks`: the exact GGUF bytes ``(N, row_bytes) uint8``."""
    q = parts["q"]
    n = q.shape[0]

    def f16_bytes(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float16).reshape(n, -1, 1).view(np.uint8)  # (N, nb, 2)

    if qtype == "q8_0":
        return np.concatenate([f16_bytes(parts["scale"]), q.reshape(n, -1, 32).view(np.uint8)], -1).reshape(n, -1)
    if qtype in ("q4_0", "q4_1"):
        values = _unpack_nibbles(q).reshape(n, -1, 2, 16)
        qs = values[..., 0, :] | (values[..., 1, :] << 4)
        heads = [f16_bytes(parts["scale"])] + ([f16_bytes(parts["zero"])] if qtype == "q4_1" else [])
        return np.concatenate(heads + [qs], axis=-1).reshape(n, -1)
    if qtype == "q4_k":
        values = _unpack_nibbles(q).reshape(n, -1, 4, 2, 32)
        qs = (values[..., 0, :] | (values[..., 1, :] << 4)).reshape(n, -1, 128)
        return np.concatenate([parts["meta"], qs], axis=-1).reshape(n, -1)
    if qtype == "q6_k":
        u = (q.astype(np.int16) + 32).astype(np.uint8).reshape(n, -1, 2, 4, 32)
        ql = np.concatenate([(u[..., 0, :] & 15) | ((u[..., 2, :] & 15) << 4),
                             (u[..., 1, :] & 15) | ((u[..., 3, :] & 15) << 4)], axis=-1)  # (N, nb, 2, 64)
        qh = sum((u[..., i, :] >> 4) << (2 * i) for i in range(4)).astype(np.uint8)  # (N, nb, 2, 32)
        return np.concatenate([ql.reshape(n, -1, 128), qh.reshape(n, -1, 64), parts["meta"]], -1).reshape(n, -1)
    raise FormatError(f"{qtype!r} is not a GGUF block format ({', '.join(GGUF_QTYPES)})")


# ---------------------------------------------------------------------------------------------------------------
# Quantizing float weights (lmforge's own formats; GGUF's Q8_0 / Q4_0 come from gguf.quants.quantize)

def quantize_weight(weight: torch.Tensor, qtype: str, group: int | None = None) -> dict[str, torch.Tensor]:
    """Float ``(N, K)`` → the in-memory layout of ``qtype`` (``int8``: symmetric absmax per row; ``int4``:
    min–max per group, ``w ≈ q·scale + zero`` with ``q`` in 0..15; GGUF types: llama.cpp's reference quantizer
    from the ``gguf`` package, where it has one).

    >>> parts = quantize_weight(torch.tensor([[0.0, 1.0, 2.0, 3.0] * 8]), "int4", 32)
    >>> dequantize_reference(parts["q"], parts["scale"], parts["zero"], 4)[0, :4]
    tensor([0., 1., 2., 3.])
    """
    n, k = weight.shape
    group = check_format(qtype, k, group)
    w = weight.detach().float().cpu()
    if qtype == "int8":
        scale = w.abs().amax(dim=1, keepdim=True) / 127  # (N, 1)
        q = torch.round(w / torch.where(scale == 0, 1.0, scale)).clamp(-127, 127).to(torch.int8)
        return {"q": q, "scale": scale}
    if qtype == "int4":
        g = w.reshape(n, k // group, group)
        lo, hi = g.amin(dim=-1), g.amax(dim=-1)  # (N, K/g)
        scale = (hi - lo) / 15
        q = torch.round((g - lo[..., None]) / torch.where(scale == 0, 1.0, scale)[..., None]).clamp(0, 15)
        values = q.to(torch.uint8).reshape(n, k).numpy()
        return {"q": torch.from_numpy(_pack_nibbles(values)), "scale": scale, "zero": lo}
    from gguf.constants import GGMLQuantizationType
    from gguf.quants import QuantError, quantize

    try:
        raw = quantize(w.numpy(), GGMLQuantizationType[qtype.upper()])
    except (NotImplementedError, QuantError):
        raise ConfigError(f"quantization {qtype}: lmforge reads it but cannot write it (the gguf package has no "
                          "quantizer for it); use q8_0, q4_0, q4_1, int8 or int4") from None
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in from_gguf_blocks(raw, qtype).items()}


# ---------------------------------------------------------------------------------------------------------------
# Row tiles: the kernels' in-memory order (made at load, undone by state_dict: the portable layout stays on disk)

TILE = 64  # rows of W per tile: the SIMD lanes of the kernels' inner loop (see lmforge.nn._quantized_numba)
_TILED = ("q", "scale", "zero")  # the buffers kept tiled in memory (``meta`` and ``bias`` stay as they are)


def tile_rows(a: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` → ``(ceil(N/T), C, T)``: tile ``t``, column ``c``, lane ``l`` is row ``t·T + l`` (rows past
    ``N`` are zeros). ``tile_rows(torch.arange(6).reshape(3, 2))[0, :, :3]`` → ``[[0, 2, 4], [1, 3, 5]]``."""
    n, c = a.shape
    pad = -n % TILE
    if pad:
        a = torch.cat([a, a.new_zeros(pad, c)])
    return a.reshape(-1, TILE, c).transpose(1, 2).contiguous()


def untile_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`tile_rows`: ``(N/T, C, T)`` → the first ``n`` rows ``(n, C)``."""
    return t.transpose(1, 2).reshape(-1, t.shape[1])[:n].contiguous()


# Numpy views of a module's buffers, and the fused decoding step's per-block plans, kept beside the modules rather
# than in them: a deep copy (or a pickle) of a model must not carry views of the original's memory along.
_numpy_views: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_decode_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_portable_memo: dict[int, tuple] = {}  # id(buffer) → (ref to it, its version and rows, ref to the portable copy)


def _portable(t: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`untile_rows`, the same result object for the same buffer while someone holds it (a tied embedding and
    LM head share their buffers; one ``state_dict`` must show them shared, so a save stores them once). Nothing
    is kept alive: the copy lives as long as the caller's state dict does."""
    hit = _portable_memo.get(id(t))
    if hit is not None and hit[0]() is t and hit[1] == (t._version, n) and (out := hit[2]()) is not None:
        return out
    out = untile_rows(t, n)
    if len(_portable_memo) > 1024:  # forget buffers that are gone
        for key in [k for k, v in _portable_memo.items() if v[0]() is None or v[2]() is None]:
            del _portable_memo[key]
    _portable_memo[id(t)] = (weakref.ref(t), (t._version, n), weakref.ref(out))
    return out


def _save_untiled(module: nn.Module, destination: dict, prefix: str, n: int) -> None:
    """After ``nn.Module._save_to_state_dict``: the tiled buffers back in their portable ``(N, ·)`` order."""
    for name in _TILED:
        if prefix + name in destination:  # the buffer itself (shared by tied modules), not the detached alias
            destination[prefix + name] = _portable(module._buffers[name], n)


def _load_tiled(module: nn.Module, state_dict: dict, prefix: str) -> None:
    """Before ``nn.Module._load_from_state_dict``: portable ``(N, ·)`` tensors into the tiled order."""
    for name in _TILED:
        value, own = state_dict.get(prefix + name), getattr(module, name, None)
        if value is not None and own is not None and value.dim() == 2 and own.dim() == 3:
            state_dict[prefix + name] = tile_rows(value)


# ---------------------------------------------------------------------------------------------------------------
# Modules

class QuantizedLinear(nn.Module):
    """A drop-in for ``nn.Linear(in_features, out_features, bias)`` whose weight stays quantized.

    ``state_dict`` holds (portable): ``q`` (int8 ``(N, K)`` or nibbles uint8 ``(N, K/2)``), ``scale`` float32
    ``(N, K/g)``, ``zero`` (4-bit formats) float32 ``(N, K/g)``, ``meta`` (K-quants: the GGUF header bytes per
    block), ``bias``. In memory ``q``, ``scale`` and ``zero`` are row tiles (:func:`tile_rows`: ``(N/T, ·, T)``),
    the kernels' order; :meth:`parts` gives them back in the portable order. ``x (..., K)`` → ``(..., N)``.
    Inference only (no gradients).
    """

    # Opt-in paths (set by use_torch_bf16_int4 / use_int8_activations). Class defaults, so reading them costs no
    # nn.Module.__getattr__ miss (an exception each) in a decoding step.
    torch_int4: tuple[torch.Tensor, torch.Tensor] | None = None
    int8_activations: bool = False

    def __init__(self, in_features: int, out_features: int, qtype: str, group: int | None = None,
                 bias: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features, self.qtype = in_features, out_features, qtype
        self.group = check_format(qtype, in_features, group)
        fmt = FORMATS[qtype]
        n, k, groups = out_features, in_features, in_features // self.group
        tiles = -(-n // TILE)
        q_cols, q_dtype = (k // 2, torch.uint8) if fmt.bits == 4 else (k, torch.int8)
        self.register_buffer("q", torch.zeros(tiles, q_cols, TILE, dtype=q_dtype))
        self.register_buffer("scale", torch.zeros(tiles, groups, TILE))
        self.register_buffer("zero", torch.zeros(tiles, groups, TILE) if fmt.bits == 4 else None)
        self.register_buffer("meta", torch.zeros(n, k // fmt.block, fmt.meta_bytes, dtype=torch.uint8)
                             if fmt.meta_bytes else None)
        self.register_buffer("bias", torch.zeros(n) if bias else None)

    @property
    def bits(self) -> int:
        return FORMATS[self.qtype].bits

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, qtype={self.qtype}, "
                f"group={self.group}, bias={self.bias is not None}")

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # noqa: ANN001
        super()._save_to_state_dict(destination, prefix, keep_vars)
        _save_untiled(self, destination, prefix, self.out_features)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        _load_tiled(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def parts(self) -> dict[str, torch.Tensor]:
        """The buffers in the portable order (what ``state_dict`` saves): ``q``, ``scale``, ``zero``, ``meta``."""
        return {name: (untile_rows(t, self.out_features) if name in _TILED else t)
                for name in ("q", "scale", "zero", "meta") if (t := getattr(self, name)) is not None}

    def set_parts(self, parts: dict[str, torch.Tensor | np.ndarray]) -> QuantizedLinear:
        """Fill the buffers from :func:`quantize_weight` / :func:`from_gguf_blocks` output (portable order; shapes
        checked)."""
        for name, value in parts.items():
            value = torch.as_tensor(value)
            old = getattr(self, name)
            want = None if old is None else ((self.out_features, old.shape[1]) if name in _TILED else tuple(old.shape))
            if old is None or tuple(value.shape) != want or old.dtype != value.dtype:
                raise FormatError(f"QuantizedLinear {self.qtype}: part {name!r} has shape {tuple(value.shape)} "
                                  f"{value.dtype}, expected {None if old is None else (want, old.dtype)}")
            setattr(self, name, tile_rows(value) if name in _TILED else value.contiguous())
        return self

    @classmethod
    def from_float(cls, weight: torch.Tensor, qtype: str, group: int | None = None,
                   bias: torch.Tensor | None = None) -> QuantizedLinear:
        """Quantize a float ``(out, in)`` weight (e.g. ``linear.weight``)."""
        out_features, in_features = weight.shape
        layer = cls(in_features, out_features, qtype, group, bias=bias is not None)
        layer.set_parts(quantize_weight(weight, qtype, layer.group))
        if bias is not None:
            layer.bias = bias.detach().float().clone()
        return layer

    @classmethod
    def from_gguf(cls, raw: np.ndarray, qtype: str, in_features: int) -> QuantizedLinear:
        """From a GGUF tensor's blocks ``(out, row_bytes) uint8``."""
        layer = cls(in_features, raw.shape[0], qtype)
        return layer.set_parts(from_gguf_blocks(raw, qtype))

    def gguf_blocks(self) -> np.ndarray:
        """The exact GGUF bytes ``(out, row_bytes)`` of a GGUF-format layer."""
        return to_gguf_blocks({name: t.numpy() for name, t in self.parts().items()}, self.qtype)

    def dequantize(self) -> torch.Tensor:
        """The float32 weight ``(out, in)``."""
        from lmforge.nn import _quantized_numba as kernels

        _follow_torch_threads()
        q, scale = self.q.numpy(), self.scale.numpy()
        if self.bits == 4:
            w = kernels.dequantize_int4(q, scale, self.zero.numpy(), self.group)
        else:
            w = kernels.dequantize_int8(q, scale, self.group)
        return torch.from_numpy(w)[:self.out_features]

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float32 weight, for code that reads ``linear.weight`` (materialises it: slow)."""
        return self.dequantize()

    def numpy_buffers(self) -> tuple[np.ndarray, ...]:
        """``q, scale[, zero]`` as numpy arrays over the buffers' memory, made again only when a buffer is replaced
        (a decode step calls ~120 layers; ``.numpy()`` and numba's typing of fresh arrays cost microseconds)."""
        buffers = self._buffers
        q, scale, zero = buffers["q"], buffers["scale"], buffers["zero"]
        views = _numpy_views.get(self)
        if views is None or views[0] is not q or views[1] is not scale or views[2] is not zero:
            arrays = (q.numpy(), scale.numpy()) + (() if zero is None else (zero.numpy(),))
            views = _numpy_views[self] = (q, scale, zero, arrays)
        return views[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.detach().reshape(-1, self.in_features)  # (M, K)
        if x2.dtype != torch.float32:
            x2 = x2.float()
        if x2.shape[0] > DECODE_MAX_ROWS:
            y = F.linear(x2, self.dequantize())
        elif self.torch_int4 is not None:
            packed, scale_zeros = self.torch_int4
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2.bfloat16(), packed, self.group, scale_zeros)
            y = y[:, :self.out_features].float()
        else:
            y = packed_matmul(x2, self, int8_activations=self.int8_activations)
        if self.bias is not None:
            y = y + self.bias
        y = y.reshape(*shape[:-1], self.out_features)
        return y if y.dtype == x.dtype else y.to(x.dtype)


def packed_matmul(x: torch.Tensor, layer: QuantizedLinear, int8_activations: bool = False) -> torch.Tensor:
    """``x (M, K) float32 @ W.T`` with ``W`` still packed → ``(M, N)``; numba threads follow torch's.
    ``int8_activations``: ``x`` quantized per block of 32 and integer dot products (see :func:`use_int8_activations`;
    a 4-bit layer whose group is a multiple of 32)."""
    from lmforge.nn import _quantized_numba as kernels

    serial = _follow_torch_threads() == 1  # one thread: run on the caller's, no pool to wake or barrier to wait at
    arrays = layer.numpy_buffers()
    out = torch.empty(x.shape[0], arrays[0].shape[0] * TILE)  # (M, N rounded up to whole tiles)
    if int8_activations:
        if layer.bits != 4 or layer.group % 32:
            raise ConfigError(f"int8 activations: {layer.qtype} (group {layer.group}) is not a 4-bit format with "
                              "groups of a multiple of 32")
        kernel = kernels.matmul_int4_q8_serial if serial else kernels.matmul_int4_q8
    elif layer.bits == 4:
        kernel = kernels.matmul_int4_serial if serial else kernels.matmul_int4
    else:
        kernel = kernels.matmul_int8_serial if serial else kernels.matmul_int8
    kernel(x.contiguous().numpy(), *arrays, layer.group, out.numpy())
    return out if out.shape[1] == layer.out_features else out[:, :layer.out_features]


def _follow_torch_threads() -> int:
    """numba's thread count (a per-thread setting) = torch's (``torch.set_num_threads``, ``--threads``); returns it."""
    import numba

    wanted = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)
    return wanted


def use_torch_bf16_int4(model: nn.Module) -> int:
    """Opt-in speed over precision: every 4-bit layer of ``model`` (Q4_0, Q4_1, Q4_K, int4) decodes through
    PyTorch's ``_weight_int4pack_mm_for_cpu`` in bfloat16 (activations, scales and zeros rounded to bfloat16:
    logits move by ~1e-2). Adds torch's CPU-specific packed copy (0.5 byte/weight + bf16 scale/zero) beside the
    portable nibbles, which stay what ``state_dict`` saves. Returns the number of layers switched.

    Torch computes ``(q - 8) · scale + zero'`` per group, so ``zero' = zero + 8 · scale``; it wants the output
    count a multiple of 16, so rows are padded with zero weights.
    """
    switched = 0
    for layer in model.modules():
        if not isinstance(layer, QuantizedLinear) or layer.bits != 4:
            continue
        n, n_pad = layer.out_features, -(-layer.out_features // 16) * 16
        parts = layer.parts()
        values = torch.from_numpy(_unpack_nibbles(parts["q"].numpy())).int()  # (N, K) 0..15
        values = F.pad(values, (0, 0, 0, n_pad - n))
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(values, 1)
        scale = F.pad(parts["scale"], (0, 0, 0, n_pad - n))
        zero = F.pad(parts["zero"] + 8 * parts["scale"], (0, 0, 0, n_pad - n))
        scale_zeros = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().bfloat16()  # (K/g, N, 2)
        layer.torch_int4 = (packed, scale_zeros)
        switched += 1
    return switched


def use_int8_activations(model: nn.Module) -> int:
    """Opt-in speed over precision, as llama.cpp decodes: every 4-bit :class:`QuantizedLinear` of ``model`` (Q4_0,
    Q4_1, Q4_K, int4; their groups are multiples of 32) multiplies decode rows (≤ :data:`DECODE_MAX_ROWS`) with
    integer dot products: each row of ``x`` is quantized per block of 32 to int8 (``d_x = max|x|/127``, round to
    nearest), each block's ``Σ q·xq`` is summed exactly in integers, then ``y = Σ_groups scale · Σ_blocks d_x · isum
    + zero · Σ x`` (the float sum of the unquantized ``x``). Each activation moves by up to ``d_x/2``, so one
    layer's outputs move by ~1e-3 of their scale, a whole model's logits by more (SmolLM2 Q4_1: up to 2.8 of 27;
    the default path is exact in float32). 8-bit layers keep the float kernel (an
    integer one measured slower, see ``docs/quantization.md``); weights and ``state_dict`` are untouched; long
    prompts keep the float32 GEMM. Returns the number of layers switched.

    >>> from torch import nn
    >>> use_int8_activations(nn.Sequential(QuantizedLinear(64, 8, "q4_1"), QuantizedLinear(64, 8, "q8_0")))
    1
    """
    switched = 0
    for layer in model.modules():
        if isinstance(layer, QuantizedLinear) and layer.bits == 4 and layer.group % 32 == 0:
            layer.int8_activations = True
            switched += 1
    return switched


class QuantizedEmbedding(nn.Module):
    """A drop-in for ``nn.Embedding`` with 8-bit rows (``q8_0``, ``q6_k``, ``int8``): ``ids (B, T)`` →
    ``(B, T, C)``, dequantizing only the rows asked for. It can share its buffers with a
    :class:`QuantizedLinear` LM head (:meth:`tied_head`), as tied models do."""

    def __init__(self, num_embeddings: int, embedding_dim: int, qtype: str) -> None:
        super().__init__()
        if FORMATS.get(qtype, FORMATS["int4"]).bits != 8:
            raise ConfigError(f"QuantizedEmbedding: {qtype!r} rows cannot be gathered; use q8_0, q6_k or int8")
        self.num_embeddings, self.embedding_dim, self.qtype = num_embeddings, embedding_dim, qtype
        self.group = check_format(qtype, embedding_dim)
        fmt = FORMATS[qtype]
        tiles = -(-num_embeddings // TILE)  # row tiles, as QuantizedLinear's (a tied LM head shares them)
        self.register_buffer("q", torch.zeros(tiles, embedding_dim, TILE, dtype=torch.int8))
        self.register_buffer("scale", torch.zeros(tiles, embedding_dim // self.group, TILE))
        self.register_buffer("meta", torch.zeros(num_embeddings, embedding_dim // fmt.block, fmt.meta_bytes,
                                                 dtype=torch.uint8) if fmt.meta_bytes else None)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, qtype={self.qtype}"

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # noqa: ANN001
        super()._save_to_state_dict(destination, prefix, keep_vars)
        _save_untiled(self, destination, prefix, self.num_embeddings)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        _load_tiled(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @classmethod
    def from_linear(cls, layer: QuantizedLinear) -> QuantizedEmbedding:
        """An embedding over the same buffers as ``layer`` (rows = vocabulary entries)."""
        emb = cls(layer.out_features, layer.in_features, layer.qtype)
        emb.q, emb.scale, emb.meta = layer.q, layer.scale, layer.meta
        return emb

    def tied_head(self) -> QuantizedLinear:
        """A :class:`QuantizedLinear` ``(C → V)`` over the same buffers (no copy)."""
        head = QuantizedLinear(self.embedding_dim, self.num_embeddings, self.qtype)
        head.q, head.scale, head.meta = self.q, self.scale, self.meta
        return head

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float32 table ``(V, C)`` (materialises it)."""
        n = self.num_embeddings
        return dequantize_reference(untile_rows(self.q, n), untile_rows(self.scale, n), None, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        tile, lane = ids // TILE, ids % TILE  # row ``id`` of the table sits in tile id // T, lane id % T
        rows = self.q[tile, :, lane].float()  # (..., C)
        scale = self.scale[tile, :, lane].repeat_interleave(self.group, dim=-1)  # (..., C)
        return rows * scale


def quantized_nbytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers, each shared tensor counted once."""
    seen, total = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


# ---------------------------------------------------------------------------------------------------------------
# Decoding a stack of packed blocks one token at a time, each block in one numba call


def _norm_tensors(norm: nn.Module | None) -> tuple | None:
    """``(weight, bias or None)`` of an RMSNorm or LayerNorm with a weight; None for anything else."""
    if type(norm) is RMSNorm:
        return norm._parameters["weight"], None
    if type(norm) is nn.LayerNorm and norm.elementwise_affine:
        return norm._parameters["weight"], norm._parameters["bias"]
    return None


def _block_tensors(block: nn.Module) -> tuple | None:
    """The tensors :func:`~lmforge.nn._quantized_numba.decode_block` reads for ``block`` — the norms' weights and
    biases, then ``q, scale, zero, bias`` and the int8-activation switch of ``qkv, proj, fc`` (``gate_up`` for
    SwiGLU) ``, down`` — or None unless ``block`` is a pre-norm block of RMS- or LayerNorms, self-attention and a
    feed-forward (any activation) whose four matrices are all packed (and not switched to torch's bfloat16 op), with
    no forward hooks on it or its parts. Reads the modules' own dicts: this runs for every block at every decoding
    step, and ``nn.Module.__getattr__`` costs ~0.5 µs a name."""
    modules = block._modules
    attn, mlp, norm_attn, norm_mlp = (modules.get(name) for name in ("attn", "mlp", "norm_attn", "norm_mlp"))
    if (not getattr(block, "prenorm", False) or "cross_attn" in modules or type(attn) is not Attention
            or attn.cross or type(mlp) is not FeedForward):
        return None
    norms = (_norm_tensors(norm_attn), _norm_tensors(norm_mlp))
    if norms[0] is None or norms[1] is None:
        return None
    fc = mlp._modules["gate_up" if mlp.activation == "swiglu" else "fc"]
    linears = (attn._modules["qkv"], attn._modules["proj"], fc, mlp._modules["proj"])
    if any(m._forward_hooks or m._forward_pre_hooks for m in (block, attn, mlp, norm_attn, norm_mlp) + linears):
        return None  # someone watches a module's calls: the fused step would skip them
    tensors = [*norms[0], *norms[1]]
    for layer in linears:
        if type(layer) is not QuantizedLinear or layer.torch_int4 is not None:
            return None
        buffers = layer._buffers
        tensors += (buffers["q"], buffers["scale"], buffers["zero"], buffers["bias"],
                    layer.int8_activations)  # a switch: the plan is made again when it changes
    return tuple(tensors)


def _block_plan(block: nn.Module) -> tuple | None:
    """The arguments of :func:`~lmforge.nn._quantized_numba.decode_block` that belong to ``block`` (numpy views of
    its tensors), made again only when one of its tensors is replaced; None when the block does not qualify
    (:func:`_block_tensors`)."""
    tensors = _block_tensors(block)
    if tensors is None:
        return None
    cached = _decode_plans.get(block)
    if cached is not None and all(a is b for a, b in zip(cached[0], tensors, strict=True)):
        return cached[1]
    from lmforge.nn import _quantized_numba as kernels

    attn, mlp = block.attn, block.mlp
    no_bias = np.zeros(0, dtype=np.float32)

    def numpy_or_empty(t: torch.Tensor | None) -> np.ndarray:
        return no_bias if t is None else t.detach().numpy()

    def norm_args(norm: nn.Module) -> tuple:
        weight, bias = _norm_tensors(norm)
        return weight.detach().numpy(), numpy_or_empty(bias), float(norm.eps), type(norm) is nn.LayerNorm

    empty = np.zeros((0, 0, 0), dtype=np.float32)
    matrices = []
    for layer in (attn.qkv, attn.proj, mlp.gate_up if mlp.activation == "swiglu" else mlp.fc, mlp.proj):
        arrays = layer.numpy_buffers()
        matrices.append((arrays[0], arrays[1], arrays[2] if len(arrays) > 2 else empty, numpy_or_empty(layer.bias),
                         layer.group, bool(layer.int8_activations)))
    plan = (norm_args(block.norm_attn), matrices[0], matrices[1], norm_args(block.norm_mlp), matrices[2],
            matrices[3], attn.n_head, kernels.ACTIVATION_CODES[mlp.activation], mlp.proj.in_features)
    _decode_plans[block] = (tensors, plan)
    return plan


def packed_decode_blocks(blocks: nn.ModuleList, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                         kv_cache: KVCache, windows: tuple[int, ...], attention_mask: torch.Tensor | None = None
                         ) -> torch.Tensor | None:
    """One new token of each of ``B`` rows, ``x (B, 1, C)``, through ``blocks``, each block in one numba call
    (:func:`~lmforge.nn._quantized_numba.decode_block`); the new keys and values go into ``kv_cache`` (the caller
    advances it), each row's at its own length. Returns None — the caller then runs the blocks as usual — unless
    every block is a packed pre-norm one (:func:`_block_tensors`: Llama- or GPT-2-shaped), ``B ≤``
    :data:`DECODE_MAX_ROWS` and the cache is a float32 CPU one. ``rope``: ``cos, sin (B, 1, D)`` of the new
    positions (None: learned positions, already in ``x``); ``windows``: per block its sliding window (0: none);
    ``attention_mask (B, S)``: 1 = real token, 0 = padding, over the cached positions and the new one (a cache with
    per-row lengths brings its own and ignores it, as :class:`~lmforge.models.gpt.GPT` does).

    Why: a decoding step through packed blocks called one torch op at a time spent ~40% of its time outside the
    matrix products (~25 small ops and 4 kernel calls per block, each with its dispatch cost, and torch's and
    numba's thread pools handing over ~150 times a token); one call per block leaves the products. Each block
    computes what :class:`~lmforge.nn.block.Block` does, in float32 (the tests hold the two paths together)."""
    from lmforge.nn import _quantized_numba as kernels

    b = x.shape[0]
    k_all, v_all = kv_cache.k, kv_cache.v  # (L, B, H_kv, max_len, D)
    if b > DECODE_MAX_ROWS or k_all.dtype != torch.float32 or k_all.device.type != "cpu" or k_all.shape[1] != b:
        return None
    plans = []
    for block in blocks:
        plan = _block_plan(block)
        if plan is None:
            return None
        plans.append(plan)
    per_row = not kv_cache.uniform
    positions = (kv_cache.lengths.numpy() if per_row else np.full(b, kv_cache.length)).astype(np.int64)
    if int(positions.max()) >= kv_cache.max_len:
        return None  # a full cache: the ordinary path raises the clear error
    keys = np.zeros((0, 0), dtype=np.bool_)
    if attention_mask is not None and not per_row:
        keys = attention_mask.detach().bool().cpu().numpy()  # (B, S)
    _follow_torch_threads()
    hidden = x.detach().reshape(b, -1).float().numpy().copy()  # (B, C), updated in place block after block
    if rope is None:  # learned positions: already added to x
        cos = sin = np.zeros((b, 0), dtype=np.float32)
    else:
        cos, sin = (r.reshape(b, -1).float().contiguous().numpy() for r in rope)  # (B, D)
    k_all, v_all = k_all.numpy(), v_all.numpy()
    for i, (plan, window) in enumerate(zip(plans, windows, strict=True)):
        norm_attn, qkv, proj, norm_mlp, fc, down, n_head, activation, n_hidden = plan
        kernels.decode_block(hidden, norm_attn, qkv, proj, norm_mlp, fc, down, k_all[i], v_all[i], positions, keys,
                             cos, sin, n_head, activation, n_hidden, window)
    return torch.from_numpy(hidden).reshape(x.shape).to(x.dtype)
