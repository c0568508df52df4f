"""Position information: learned tables (GPT-2, BERT), fixed sinusoids (the original Transformer), and
rotary embeddings (RoPE, Llama family), which rotate query/key pairs by a position-dependent angle.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lmforge.errors import ConfigError


def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """The fixed ``(n_positions, dim)`` table of "Attention is all you need": sin on even, cos on odd columns.

    >>> sinusoidal_table(2, 4)
    tensor([[0.0000, 1.0000, 0.0000, 1.0000],
            [0.8415, 0.5403, 0.0100, 0.9999]])
    """
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]  # (N, 1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (dim/2,)
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: dim // 2])
    return table


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position vectors, looked up by position id: ``(B, T)`` → ``(B, T, C)``."""

    def __init__(self, n_positions: int, dim: int) -> None:
        super().__init__()
        # Not a parameter and not saved: it is a pure function of the shape.
        self.register_buffer("table", sinusoidal_table(n_positions, dim), persistent=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return self.table[position_ids]


def rope_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """Rotation speeds of the ``head_dim / 2`` channel pairs: ``theta ** (-2i / head_dim)``.

    >>> rope_inv_freq(4, 10000.0)
    tensor([1.0000, 0.0100])
    """
    # Computed exactly as transformers does (int64 arange → float) so the angles match bit for bit.
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


# ---------------------------------------------------------------- RoPE scaling (longer contexts than trained on)
#
# Every method below slows some of the rotations down so that positions beyond the trained context map to angles
# the model has seen. They differ in WHICH channel pairs are slowed and by how much. The ``rope_scaling`` dict
# uses the field names of Hugging Face's ``rope_parameters`` so that configs translate one to one.

ROPE_SCALING_FIELDS: dict[str, dict[str, object]] = {
    # rope_type → {field: default}; ``...`` marks a required field. original_max_position_embeddings defaults
    # to the model's block_size (as transformers defaults it to max_position_embeddings).
    "linear": {"factor": ...},
    "dynamic": {"factor": ..., "original_max_position_embeddings": None},
    "llama3": {
        "factor": ..., "low_freq_factor": ..., "high_freq_factor": ..., "original_max_position_embeddings": None,
    },
    "yarn": {
        "factor": ..., "original_max_position_embeddings": None, "attention_factor": None, "beta_fast": 32.0,
        "beta_slow": 1.0, "mscale": None, "mscale_all_dim": None, "truncate": True,
    },
}


def check_rope_scaling(scaling: dict | None, block_size: int, field: str = "rope_scaling") -> dict | None:
    """Validate a ``rope_scaling`` dict and fill in its defaults (``None`` or ``{}`` = plain RoPE).

    >>> check_rope_scaling({"rope_type": "linear", "factor": 2}, 64)
    {'rope_type': 'linear', 'factor': 2.0}
    >>> check_rope_scaling({"rope_type": "dynamic", "factor": 2.0}, 64)
    {'rope_type': 'dynamic', 'factor': 2.0, 'original_max_position_embeddings': 64}
    """
    if not scaling:
        return None
    if not isinstance(scaling, dict):
        raise ConfigError(f"{field}: expected a dict with a 'rope_type', got {scaling!r}")
    rope_type = scaling.get("rope_type")
    if rope_type not in ROPE_SCALING_FIELDS:
        raise ConfigError(
            f"{field}: rope type {rope_type!r} is not supported (supported: {', '.join(ROPE_SCALING_FIELDS)})"
        )
    spec = ROPE_SCALING_FIELDS[rope_type]
    unknown = sorted(set(scaling) - set(spec) - {"rope_type"})
    if unknown:
        raise ConfigError(f"{field}: unknown field(s) {unknown} for rope type {rope_type!r} (known: {sorted(spec)})")
    out: dict = {"rope_type": rope_type}
    for name, default in spec.items():
        value = scaling.get(name, default)
        if value is ...:
            raise ConfigError(f"{field}: rope type {rope_type!r} needs the field {name!r}")
        if name == "original_max_position_embeddings":
            value = block_size if value is None else value
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{field}.{name}: expected a positive integer, got {value!r}")
        elif name == "truncate":
            value = bool(value)
        elif value is not None:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{field}.{name}: expected a positive number, got {value!r}")
            value = float(value)
        out[name] = value
    if rope_type == "llama3" and out["high_freq_factor"] <= out["low_freq_factor"]:
        raise ConfigError(f"{field}: llama3 needs high_freq_factor > low_freq_factor, got "
                          f"{out['high_freq_factor']} <= {out['low_freq_factor']}")
    return out


def linear_inv_freq(inv_freq: torch.Tensor, factor: float) -> torch.Tensor:
    """Position interpolation: every rotation ``factor`` times slower, so position ``p`` looks like ``p / factor``.

    >>> linear_inv_freq(torch.tensor([1.0, 0.01]), 4.0)
    tensor([0.2500, 0.0025])
    """
    return inv_freq / factor


def dynamic_ntk_theta(theta: float, factor: float, seq_len: int, original: int, head_dim: int) -> torch.Tensor:
    """Dynamic NTK: a larger base for a sequence of ``seq_len > original`` positions, so the slowest rotation
    stretches over the whole sequence while the fastest hardly change. A float32 scalar tensor, computed in the
    same float32 steps as transformers, so the angles (and greedy choices) agree exactly.

    >>> dynamic_ntk_theta(10000.0, 2.0, 32, 16, 8)
    tensor(43267.4883)
    """
    length = torch.tensor(max(seq_len, original), dtype=torch.int64)
    return theta * ((factor * length / original) - (factor - 1)) ** (head_dim / (head_dim - 2))


def llama3_inv_freq(
    inv_freq: torch.Tensor, factor: float, low_freq_factor: float, high_freq_factor: float, original: int
) -> torch.Tensor:
    """Llama 3.1: rotations whose wavelength is longer than ``original / low_freq_factor`` positions are slowed by
    ``factor``, those shorter than ``original / high_freq_factor`` are kept, and the band between is blended
    linearly in ``original / wavelength``.

    >>> llama3_inv_freq(torch.tensor([1.0, 1e-2, 1e-4]), 8.0, 1.0, 4.0, 8192)
    tensor([1.0000e+00, 1.0000e-02, 1.2500e-05])
    """
    wavelength = 2 * math.pi / inv_freq
    slow = wavelength > original / low_freq_factor  # long waves: the model never saw a full turn → interpolate
    fast = wavelength < original / high_freq_factor  # short waves: seen many full turns → keep
    scaled = torch.where(slow, inv_freq / factor, inv_freq)
    blend = (original / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)  # 0 → slow, 1 → fast
    blended = (1 - blend) * scaled / factor + blend * scaled
    return torch.where(~fast & ~slow, blended, scaled)


def yarn_inv_freq(
    head_dim: int, theta: float, factor: float, original: int, beta_fast: float, beta_slow: float, truncate: bool
) -> torch.Tensor:
    """YaRN ("NTK-by-parts"): channel pairs that turn more than ``beta_fast`` times over the original context keep
    their speed, those turning fewer than ``beta_slow`` times are slowed by ``factor``, a linear ramp in between.

    >>> yarn_inv_freq(8, 10000.0, 4.0, 16, 32.0, 1.0, True)
    tensor([1.0000e+00, 2.5000e-02, 2.5000e-03, 2.5000e-04])
    """

    def pair_index(turns: float) -> float:  # the channel pair that makes ``turns`` full turns over ``original``
        return head_dim * math.log(original / (turns * 2 * math.pi)) / (2 * math.log(theta))

    low, high = pair_index(beta_fast), pair_index(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # a ramp of width zero would divide by zero
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)  # 0 keep … 1 slow
    speed = theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    keep = 1 - ramp
    return (1.0 / (factor * speed)) * (1 - keep) + (1.0 / speed) * keep


def yarn_attention_factor(factor: float, attention_factor: float | None, mscale: float | None,
                          mscale_all_dim: float | None) -> float:
    """YaRN's temperature: cos and sin are multiplied by this (``0.1 ln(factor) + 1`` by default), sharpening the
    attention that interpolation flattened.

    >>> round(yarn_attention_factor(4.0, None, None, None), 4)
    1.1386
    """
    if attention_factor is not None:
        return attention_factor

    def m(scale: float, weight: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * weight * math.log(scale) + 1.0

    if mscale and mscale_all_dim:
        return m(factor, mscale) / m(factor, mscale_all_dim)
    return m(factor)


def rope_frequencies(head_dim: int, theta: float, scaling: dict | None = None) -> tuple[torch.Tensor, float]:
    """``(inv_freq (D/2,), attention_factor)`` for plain or scaled RoPE (``scaling`` as checked by
    :func:`check_rope_scaling`). Dynamic NTK returns the plain frequencies here: it changes only when a sequence
    outgrows ``original_max_position_embeddings`` (see :meth:`Rotary.forward`).

    >>> rope_frequencies(4, 10000.0, {"rope_type": "linear", "factor": 2.0})
    (tensor([0.5000, 0.0050]), 1.0)
    """
    inv_freq = rope_inv_freq(head_dim, theta)
    rope_type = scaling["rope_type"] if scaling else "default"
    if rope_type == "linear":
        return linear_inv_freq(inv_freq, scaling["factor"]), 1.0
    if rope_type == "llama3":
        s = scaling
        return llama3_inv_freq(inv_freq, s["factor"], s["low_freq_factor"], s["high_freq_factor"],
                               s["original_max_position_embeddings"]), 1.0
    if rope_type == "yarn":
        s = scaling
        inv_freq = yarn_inv_freq(head_dim, theta, s["factor"], s["original_max_position_embeddings"], s["beta_fast"],
                                 s["beta_slow"], s["truncate"])
        return inv_freq, yarn_attention_factor(s["factor"], s["attention_factor"], s["mscale"], s["mscale_all_dim"])
    return inv_freq, 1.0  # default, and dynamic within its original context


class Rotary(nn.Module):
    """RoPE angles for given positions: ``position_ids (B, T)`` → ``cos, sin`` each ``(B, T, D)``.

    Uses the "rotate half" layout of the Hugging Face Llama checkpoints: channel ``i`` pairs with ``i + D/2``.
    ``scaling``: an optional ``rope_scaling`` dict (linear, dynamic, llama3, yarn; see :func:`check_rope_scaling`).
    """

    def __init__(self, head_dim: int, theta: float = 10000.0, scaling: dict | None = None) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        self.scaling = scaling
        inv_freq, self.attention_factor = rope_frequencies(head_dim, theta, scaling)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        # Dynamic NTK recomputes the base from the sequence length; None for every other kind (no per-step work).
        self.dynamic_from = (
            scaling["original_max_position_embeddings"] if scaling and scaling["rope_type"] == "dynamic" else None
        )

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - nn.Module's signature
        # Keep the frequencies in float32 when the model is cast to bf16/fp16: rounded frequencies would
        # shift every angle at long positions.
        out = super()._apply(fn, recurse)
        self.inv_freq = rope_frequencies(self.head_dim, self.theta, self.scaling)[0].to(self.inv_freq.device)
        return out

    def forward(
        self, position_ids: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self.inv_freq
        if self.dynamic_from is not None:
            # The base follows the longest position of THIS call (as transformers does): during cached decoding
            # the keys already stored keep the angles they were given, so cached logits follow transformers'
            # generate, not a full recompute at the final length.
            seq_len = int(position_ids.max()) + 1
            if seq_len > self.dynamic_from:
                theta = dynamic_ntk_theta(self.theta, self.scaling["factor"], seq_len, self.dynamic_from, self.head_dim)
                inv_freq = rope_inv_freq(self.head_dim, theta).to(inv_freq.device)
        freqs = position_ids[..., None].float() * inv_freq  # (B, T, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, D)
        cos, sin = emb.cos(), emb.sin()
        if self.attention_factor != 1.0:
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        return cos.to(dtype), sin.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] → [-x2, x1]`` on the last dimension.

    >>> rotate_half(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    tensor([-3., -4.,  1.,  2.])
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys ``x (B, H, T, D)`` by the angles ``cos, sin (B, T, D)``."""
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, D): same angle for every head
    return x * cos + rotate_half(x) * sin
