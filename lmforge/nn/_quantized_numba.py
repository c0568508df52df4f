"""The matmul kernels behind :mod:`lmforge.nn.quantized`, compiled with numba: ``x (M, K) @ W.T`` for a few rows
``M`` (decoding) while ``W (N, K)`` stays packed, so each weight byte is read once per call.

The weights come in *row tiles* (what :func:`lmforge.nn.quantized.tile_rows` makes at load time): ``T`` rows of
``W`` side by side, column by column, so one byte column of a tile holds the same column of ``T`` rows. The inner
loop then runs over the ``T`` rows of a tile — one SIMD lane per output row, a broadcast ``x`` value, no
horizontal sum anywhere — which is what lets LLVM vectorize it (a per-group dot product along ``K`` needs a
horizontal sum of 16 lanes per group of 32 weights, which cost more than the arithmetic).

- 4-bit: ``q (N/T, K/2, T) uint8``: byte ``j`` of a row holds weights ``2j`` (low nibble) and ``2j+1`` (high);
  ``scale, zero (N/T, K/g, T) float32``; ``w = q * scale + zero``. Per group ``Σ w·x = scale·Σ q·x + zero·Σ x``.
- 8-bit: ``q (N/T, K, T) int8``, ``scale (N/T, K/g, T) float32``; ``w = q * scale``.

A decoding step of a Llama-shaped block runs as one call (:func:`decode_block`: norms, rotation, attention over the
KV cache, SwiGLU and the block's four packed products), so that ~25 small torch ops per block do not cost more than
the products themselves.

Tiles are spread over the threads (``prange``). Sums are float32, as in an fp32 matmul. Nibbles are split with
uint8 operations cast back to uint8 (``np.uint8(b >> FOUR)``): numba types integer arithmetic as int64, and
int64 lanes halve what one vector instruction does (measured: 20% slower; a float split with ``floor`` too).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
LANES = 64  # rows per tile (lmforge.nn.quantized.TILE) as a constant: the lane loops then unroll into whole vectors
# with no run-time trip-count checks (measured: the float kernels ~15% faster, the int8-activation one ~1.1× → ~1.35×)
FIFTEEN, FOUR = np.uint8(15), np.uint8(4)  # uint8 operands, results cast back to uint8: numba would widen to int64


@njit(fastmath=FASTMATH, cache=True)
def _int4_columns(x: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x (M, K)`` → its even columns, odd columns ``(M, K/2)`` and sums per group ``(M, K/g)`` (for ``zero``)."""
    m_rows, k_cols = x.shape
    half, half_group = k_cols // 2, group // 2
    x_even = np.empty((m_rows, half), dtype=np.float32)
    x_odd = np.empty((m_rows, half), dtype=np.float32)
    x_sum = np.zeros((m_rows, k_cols // group), dtype=np.float32)
    for m in range(m_rows):
        for j in range(half):
            x_even[m, j] = x[m, 2 * j]
            x_odd[m, j] = x[m, 2 * j + 1]
            x_sum[m, j // half_group] += x[m, 2 * j] + x[m, 2 * j + 1]
    return x_even, x_odd, x_sum


@njit(fastmath=FASTMATH, cache=True)
def _int4_tile(out: np.ndarray, x_even: np.ndarray, x_odd: np.ndarray, x_sum: np.ndarray, qt: np.ndarray,
               st: np.ndarray, zt: np.ndarray, half_group: int, first: int) -> None:
    """One row tile ``qt (K/2, T)``, ``st, zt (K/g, T)`` → ``out[:, first:first + T]`` (one or two rows of ``x``;
    more: :func:`_int4_tile_rows`)."""
    tile = LANES
    part = np.empty(tile, dtype=np.float32)
    acc = np.empty(tile, dtype=np.float32)
    for m in range(x_even.shape[0]):
        xe, xo = x_even[m], x_odd[m]
        acc[:] = 0
        for grp in range(st.shape[0]):
            part[:] = 0
            for j in range(grp * half_group, (grp + 1) * half_group, 2):  # two byte columns per pass
                a0, b0, a1, b1 = xe[j], xo[j], xe[j + 1], xo[j + 1]
                r0, r1 = qt[j], qt[j + 1]
                for lane in range(tile):
                    v0, v1 = r0[lane], r1[lane]
                    lo0, hi0 = np.float32(np.uint8(v0 & FIFTEEN)), np.float32(np.uint8(v0 >> FOUR))
                    lo1, hi1 = np.float32(np.uint8(v1 & FIFTEEN)), np.float32(np.uint8(v1 >> FOUR))
                    part[lane] += (lo0 * a0 + hi0 * b0) + (lo1 * a1 + hi1 * b1)
            s, z, xg = st[grp], zt[grp], x_sum[m, grp]
            for lane in range(tile):
                acc[lane] += s[lane] * part[lane] + z[lane] * xg
        out[m, first:first + tile] = acc


@njit(fastmath=FASTMATH, cache=True)
def _int4_tile_rows(out: np.ndarray, x_even: np.ndarray, x_odd: np.ndarray, x_sum: np.ndarray, qt: np.ndarray,
                    st: np.ndarray, zt: np.ndarray, half_group: int, first: int) -> None:
    """:func:`_int4_tile` for three rows of ``x`` or more: per group, the nibbles become a float32 ``(g/2, T)`` pair
    of buffers (low, high) once, and each row's partial sums read those — unpacking is a large part of the 4-bit
    kernel's work, and a batch of decoding rows would otherwise redo it per row (measured on one thread, 3072×576:
    1.2× at 4 rows, 1.35× at 8; at 1–2 rows the buffers cost more than they save)."""
    tile = LANES
    m_rows = x_even.shape[0]
    low = np.empty((half_group, tile), dtype=np.float32)
    high = np.empty((half_group, tile), dtype=np.float32)
    part = np.empty(tile, dtype=np.float32)
    acc = np.zeros((m_rows, tile), dtype=np.float32)
    for grp in range(st.shape[0]):
        base = grp * half_group
        for j in range(half_group):
            row = qt[base + j]
            for lane in range(tile):
                v = row[lane]
                low[j, lane] = np.float32(np.uint8(v & FIFTEEN))
                high[j, lane] = np.float32(np.uint8(v >> FOUR))
        s, z = st[grp], zt[grp]
        for m in range(m_rows):
            xe, xo = x_even[m], x_odd[m]
            part[:] = 0
            for j in range(0, half_group, 2):
                a0, b0, a1, b1 = xe[base + j], xo[base + j], xe[base + j + 1], xo[base + j + 1]
                l0, h0, l1, h1 = low[j], high[j], low[j + 1], high[j + 1]
                for lane in range(tile):
                    part[lane] += (l0[lane] * a0 + h0[lane] * b0) + (l1[lane] * a1 + h1[lane] * b1)
            xg = x_sum[m, grp]
            for lane in range(tile):
                acc[m, lane] += s[lane] * part[lane] + z[lane] * xg
    for m in range(m_rows):
        out[m, first:first + tile] = acc[m]


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_int4(x: np.ndarray, q: np.ndarray, scale: np.ndarray, zero: np.ndarray, group: int,
                out: np.ndarray) -> None:
    """``x (M, K)`` → ``out (M, N/T·T)`` for ``w = q * scale + zero`` (tiled nibbles ``q (N/T, K/2, T)``).
    ``out`` comes from the caller (a torch tensor's memory: no array to hand over afterwards)."""
    x_even, x_odd, x_sum = _int4_columns(x, group)
    tile = LANES  # the tile functions' lane count (a constant there)
    if x.shape[0] > 2:
        for t in prange(q.shape[0]):
            _int4_tile_rows(out, x_even, x_odd, x_sum, q[t], scale[t], zero[t], group // 2, t * tile)
    else:
        for t in prange(q.shape[0]):
            _int4_tile(out, x_even, x_odd, x_sum, q[t], scale[t], zero[t], group // 2, t * tile)


@njit(fastmath=FASTMATH, cache=True)
def matmul_int4_serial(x: np.ndarray, q: np.ndarray, scale: np.ndarray, zero: np.ndarray, group: int,
                       out: np.ndarray) -> None:
    """:func:`matmul_int4` on the calling thread alone (one thread: no pool to wake, no barrier to wait at)."""
    x_even, x_odd, x_sum = _int4_columns(x, group)
    tile = LANES  # the tile functions' lane count (a constant there)
    for t in range(q.shape[0]):
        if x.shape[0] > 2:
            _int4_tile_rows(out, x_even, x_odd, x_sum, q[t], scale[t], zero[t], group // 2, t * tile)
        else:
            _int4_tile(out, x_even, x_odd, x_sum, q[t], scale[t], zero[t], group // 2, t * tile)


@njit(fastmath=FASTMATH, cache=True)
def _int8_tile(out: np.ndarray, x: np.ndarray, qt: np.ndarray, st: np.ndarray, group: int, first: int) -> None:
    """One row tile ``qt (K, T)``, ``st (K/g, T)`` → ``out[:, first:first + T]``."""
    tile = LANES
    part = np.empty(tile, dtype=np.float32)
    acc = np.empty(tile, dtype=np.float32)
    for m in range(x.shape[0]):
        xm = x[m]
        acc[:] = 0
        for grp in range(st.shape[0]):
            start, stop = grp * group, (grp + 1) * group
            part[:] = 0
            for k in range(start, stop - 1, 2):  # two columns per pass
                a0, a1 = xm[k], xm[k + 1]
                r0, r1 = qt[k], qt[k + 1]
                for lane in range(tile):
                    part[lane] += np.float32(r0[lane]) * a0 + np.float32(r1[lane]) * a1
            if group % 2:  # an odd row length (int8 per row)
                a0, r0 = xm[stop - 1], qt[stop - 1]
                for lane in range(tile):
                    part[lane] += np.float32(r0[lane]) * a0
            s = st[grp]
            for lane in range(tile):
                acc[lane] += s[lane] * part[lane]
        out[m, first:first + tile] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_int8(x: np.ndarray, q: np.ndarray, scale: np.ndarray, group: int, out: np.ndarray) -> None:
    """``x (M, K)`` → ``out (M, N/T·T)`` for ``w = q * scale`` (tiled ``q (N/T, K, T)``, groups of ``group``)."""
    tile = LANES  # the tile functions' lane count (a constant there)
    for t in prange(q.shape[0]):
        _int8_tile(out, x, q[t], scale[t], group, t * tile)


@njit(fastmath=FASTMATH, cache=True)
def matmul_int8_serial(x: np.ndarray, q: np.ndarray, scale: np.ndarray, group: int, out: np.ndarray) -> None:
    """:func:`matmul_int8` on the calling thread alone."""
    tile = LANES  # the tile functions' lane count (a constant there)
    for t in range(q.shape[0]):
        _int8_tile(out, x, q[t], scale[t], group, t * tile)


@njit(parallel=True, cache=True)  # no fastmath: q·scale + zero rounded as the reference does (no fused multiply-add)
def dequantize_int4(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, group: int) -> np.ndarray:
    """The float32 matrix ``(N/T·T, K)`` of the tiled 4-bit layout (for long prompts: one dequantize, then a GEMM).
    Each tile is dequantized column by column into a ``(K, T)`` buffer (whole vectors, as the kernels read it), then
    written out row by row while it sits in cache: twice as fast as reading the tile across its lanes."""
    n_tiles, half, _ = q.shape
    out = np.empty((n_tiles * LANES, 2 * half), dtype=np.float32)
    for t in prange(n_tiles):
        buf = np.empty((2 * half, LANES), dtype=np.float32)
        for j in range(half):
            grp = (2 * j) // group
            s, z, row = scale[t, grp], zero[t, grp], q[t, j]
            for lane in range(LANES):
                byte = row[lane]
                buf[2 * j, lane] = np.float32(byte & FIFTEEN) * s[lane] + z[lane]
                buf[2 * j + 1, lane] = np.float32(byte >> FOUR) * s[lane] + z[lane]
        for lane in range(LANES):
            dst = out[t * LANES + lane]
            for k in range(2 * half):
                dst[k] = buf[k, lane]
    return out


@njit(parallel=True, cache=True)
def dequantize_int8(q: np.ndarray, scale: np.ndarray, group: int) -> np.ndarray:
    """The float32 matrix ``(N/T·T, K)`` of the tiled 8-bit layout (tile by tile, as :func:`dequantize_int4`)."""
    n_tiles, k_cols, _ = q.shape
    out = np.empty((n_tiles * LANES, k_cols), dtype=np.float32)
    for t in prange(n_tiles):
        buf = np.empty((k_cols, LANES), dtype=np.float32)
        for k in range(k_cols):
            s, row = scale[t, k // group], q[t, k]
            for lane in range(LANES):
                buf[k, lane] = np.float32(row[lane]) * s[lane]
        for lane in range(LANES):
            dst = out[t * LANES + lane]
            for k in range(k_cols):
                dst[k] = buf[k, lane]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Integer dot products for the 4-bit layout (the opt-in :func:`lmforge.nn.quantized.use_int8_activations`, as
# llama.cpp decodes): each row of ``x`` is quantized per block of 32 to int8 with ``d_x = max|x| / 127`` (round to
# nearest, ties to even); per block the kernel sums ``q · xq`` exactly in integer lanes, then ``Σ w·x ≈ scale ·
# Σ_blocks d_x · isum + zero · Σ x``, where ``Σ x`` comes from the unquantized ``x`` as in the float kernel. The group
# must be a multiple of 32. (An 8-bit twin — int8 × int8 products, int32 sums — measured ~0.9× the float 8-bit
# kernel: the products need int32 lanes, no narrower than float32 ones; it was not kept.)

QBLOCK = 32  # activation values per int8 block (one d_x each)


@njit(cache=True)
def quantize_rows_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x (M, K) float32`` → ``xq (M, K) int32`` in -127..127 and ``d_x (M, K/32) float32`` with
    ``x ≈ xq · d_x`` per block of 32 (``d_x = max|x|/127``; ``xq = rint(x · (1/d_x))``; an all-zero block: 0)."""
    m_rows, k_cols = x.shape
    xq = np.empty((m_rows, k_cols), dtype=np.int32)
    dx = np.empty((m_rows, k_cols // QBLOCK), dtype=np.float32)
    for m in range(m_rows):
        for b in range(k_cols // QBLOCK):
            amax = np.float32(0)
            for k in range(b * QBLOCK, (b + 1) * QBLOCK):
                amax = max(amax, abs(x[m, k]))
            d = amax / np.float32(127)
            inv = np.float32(1) / d if d > 0 else np.float32(0)
            dx[m, b] = d
            for k in range(b * QBLOCK, (b + 1) * QBLOCK):
                xq[m, k] = np.int32(np.rint(x[m, k] * inv))
    return xq, dx


@njit(fastmath=FASTMATH, cache=True)
def _int4_columns_q8(x: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x (M, K)`` → ``a = xq[:, 0::2]`` and ``b - 16a`` with ``b = xq[:, 1::2]`` ``(M, K/2) int16`` (see
    :func:`_int4_q8_tile`), ``d_x (M, K/32)`` and the float sums of ``x`` per group ``(M, K/g)``."""
    xq, dx = quantize_rows_int8(x)
    m_rows, k_cols = x.shape
    half = k_cols // 2
    x_even = np.empty((m_rows, half), dtype=np.int16)
    x_odd = np.empty((m_rows, half), dtype=np.int16)
    x_sum = np.zeros((m_rows, k_cols // group), dtype=np.float32)
    for m in range(m_rows):
        for j in range(half):
            x_even[m, j] = xq[m, 2 * j]
            x_odd[m, j] = xq[m, 2 * j + 1] - 16 * xq[m, 2 * j]  # see _int4_q8_tile
            x_sum[m, (2 * j) // group] += x[m, 2 * j] + x[m, 2 * j + 1]
    return x_even, x_odd, dx, x_sum


@njit(fastmath=FASTMATH, cache=True)
def _int4_q8_tile(out: np.ndarray, x_even: np.ndarray, x_odd: np.ndarray, dx: np.ndarray, x_sum: np.ndarray,
                  qt: np.ndarray, st: np.ndarray, zt: np.ndarray, group: int, first: int) -> None:
    """One row tile ``qt (K/2, T)``, ``st, zt (K/g, T)`` → ``out[:, first:first + T]``.

    A nibble times an int8 is at most 15·127 = 1905 in size, so the sum of 16 (half a block) fits an int16 lane:
    products and sums run in int16 lanes (twice as many per vector as int32 or float32; measured: int32 lanes
    were slower than the float kernel), and each half block's sum widens to int32. A byte ``v = lo + 16·hi`` needs
    no ``lo``: ``lo·a + hi·b = v·a + hi·(b - 16a)``; the terms may wrap in int16 but the sum is exact modulo 2¹⁶
    and fits, so the result is exact."""
    tile = LANES
    h0 = np.empty(tile, dtype=np.int16)
    h1 = np.empty(tile, dtype=np.int16)
    part = np.empty(tile, dtype=np.float32)
    acc = np.empty(tile, dtype=np.float32)
    blocks = group // QBLOCK
    quarter = QBLOCK // 4  # byte columns per half block (16 weights)
    for m in range(x_even.shape[0]):
        xe, xo, dm = x_even[m], x_odd[m], dx[m]
        acc[:] = 0
        for grp in range(st.shape[0]):
            part[:] = 0
            for blk in range(grp * blocks, (grp + 1) * blocks):
                h0[:] = 0
                h1[:] = 0
                for j in range(blk * 2 * quarter, blk * 2 * quarter + quarter):  # byte j → h0, byte j + 8 → h1
                    a0, b0, a1, b1 = xe[j], xo[j], xe[j + quarter], xo[j + quarter]
                    r0, r1 = qt[j], qt[j + quarter]
                    for lane in range(tile):
                        v0, v1 = r0[lane], r1[lane]
                        hi0, hi1 = np.int16(np.uint8(v0 >> FOUR)), np.int16(np.uint8(v1 >> FOUR))
                        h0[lane] += np.int16(np.int16(np.int16(v0) * a0) + np.int16(hi0 * b0))
                        h1[lane] += np.int16(np.int16(np.int16(v1) * a1) + np.int16(hi1 * b1))
                d = dm[blk]
                for lane in range(tile):
                    part[lane] += np.float32(np.int32(h0[lane]) + np.int32(h1[lane])) * d
            s, z, xg = st[grp], zt[grp], x_sum[m, grp]
            for lane in range(tile):
                acc[lane] += s[lane] * part[lane] + z[lane] * xg
        out[m, first:first + tile] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_int4_q8(x: np.ndarray, q: np.ndarray, scale: np.ndarray, zero: np.ndarray, group: int,
                   out: np.ndarray) -> None:
    """:func:`matmul_int4` with int8 activations and integer dot products (``group`` a multiple of 32)."""
    if q.shape[2] != LANES:
        raise ValueError("int8-activation kernel: tiles must have LANES rows")
    x_even, x_odd, dx, x_sum = _int4_columns_q8(x, group)
    tile = LANES  # the tile functions' lane count (a constant there)
    for t in prange(q.shape[0]):
        _int4_q8_tile(out, x_even, x_odd, dx, x_sum, q[t], scale[t], zero[t], group, t * tile)


@njit(fastmath=FASTMATH, cache=True)
def matmul_int4_q8_serial(x: np.ndarray, q: np.ndarray, scale: np.ndarray, zero: np.ndarray, group: int,
                          out: np.ndarray) -> None:
    """:func:`matmul_int4_q8` on the calling thread alone."""
    if q.shape[2] != LANES:
        raise ValueError("int8-activation kernel: tiles must have LANES rows")
    x_even, x_odd, dx, x_sum = _int4_columns_q8(x, group)
    tile = LANES  # the tile functions' lane count (a constant there)
    for t in range(q.shape[0]):
        _int4_q8_tile(out, x_even, x_odd, dx, x_sum, q[t], scale[t], zero[t], group, t * tile)


# ---------------------------------------------------------------------------------------------------------------
# One decoding step of a pre-norm block (Llama- or GPT-2-shaped) whose four matrices are packed: one call per block
# and step instead of ~25 torch ops and 4 kernel calls (per-op overhead was ~40% of a packed model's step; see
# lmforge.nn.quantized.packed_decode_blocks).


@njit(fastmath=FASTMATH, cache=True)
def _norm(x: np.ndarray, norm: tuple) -> np.ndarray:
    """``x (M, C)`` → each row normalised by ``norm = (weight, bias, eps, centred)``: RMSNorm ``x / sqrt(mean(x²) +
    eps) · weight`` or, ``centred``, LayerNorm ``(x - mean) / sqrt(var + eps) · weight + bias`` (``bias`` may be
    empty)."""
    weight, bias, eps, centred = norm
    c_dim = x.shape[1]
    out = np.empty_like(x)
    for m in range(x.shape[0]):
        mean = np.float32(0)
        if centred:
            for c in range(c_dim):
                mean += x[m, c]
            mean /= np.float32(c_dim)
        total = np.float32(0)
        for c in range(c_dim):
            total += (x[m, c] - mean) * (x[m, c] - mean)
        inv = np.float32(1) / np.sqrt(total / np.float32(c_dim) + np.float32(eps))
        for c in range(c_dim):
            out[m, c] = (x[m, c] - mean) * inv * weight[c]
        for c in range(bias.shape[0]):
            out[m, c] += bias[c]
    return out


# The feed-forward activations of decode_block (lmforge.nn.feedforward.ACTIVATIONS), as numbers for numba.
SWIGLU, GELU_TANH, GELU, RELU, SILU = range(5)
ACTIVATION_CODES = {"swiglu": SWIGLU, "gelu_tanh": GELU_TANH, "gelu": GELU, "relu": RELU, "silu": SILU}


@njit(fastmath=FASTMATH, cache=True)
def _activate(h: np.ndarray, activation: int, n_hidden: int) -> np.ndarray:
    """``h (M, ≥ n_hidden)`` → ``(M, n_hidden)``; SwiGLU reads ``h (M, ≥ 2 n_hidden)``: ``silu(gate) · up``."""
    out = np.empty((h.shape[0], n_hidden), dtype=np.float32)
    for m in range(h.shape[0]):
        for i in range(n_hidden):
            g = h[m, i]
            if activation == SWIGLU:
                out[m, i] = g / (np.float32(1) + np.exp(-g)) * h[m, n_hidden + i]
            elif activation == GELU_TANH:
                out[m, i] = np.float32(0.5) * g * (np.float32(1) + np.tanh(
                    np.float32(0.7978845608028654) * (g + np.float32(0.044715) * g * g * g)))
            elif activation == GELU:
                out[m, i] = np.float32(0.5) * g * (np.float32(1) + math.erf(g * np.float32(0.7071067811865476)))
            elif activation == RELU:
                out[m, i] = max(g, np.float32(0))
            else:
                out[m, i] = g / (np.float32(1) + np.exp(-g))
    return out


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _packed_linear(x: np.ndarray, matrix: tuple) -> np.ndarray:
    """``x (M, K)`` through one packed layer ``matrix = (q, scale, zero, bias, group, int8_activations)`` → ``(M, N
    rounded up to whole tiles)``: 4-bit when ``q`` has half as many byte columns as ``x`` has values, else 8-bit."""
    q, scale, zero, bias, group, int8_activations = matrix
    out = np.empty((x.shape[0], q.shape[0] * LANES), dtype=np.float32)
    if 2 * q.shape[1] == x.shape[1] and int8_activations:
        xe8, xo8, dx, xs8 = _int4_columns_q8(x, group)
        for t in prange(q.shape[0]):
            _int4_q8_tile(out, xe8, xo8, dx, xs8, q[t], scale[t], zero[t], group, t * LANES)
    elif 2 * q.shape[1] == x.shape[1] and x.shape[0] > 2:
        x_even, x_odd, x_sum = _int4_columns(x, group)
        for t in prange(q.shape[0]):
            _int4_tile_rows(out, x_even, x_odd, x_sum, q[t], scale[t], zero[t], group // 2, t * LANES)
    elif 2 * q.shape[1] == x.shape[1]:
        x_even, x_odd, x_sum = _int4_columns(x, group)
        for t in prange(q.shape[0]):
            _int4_tile(out, x_even, x_odd, x_sum, q[t], scale[t], zero[t], group // 2, t * LANES)
    else:
        for t in prange(q.shape[0]):
            _int8_tile(out, x, q[t], scale[t], group, t * LANES)
    for m in range(x.shape[0]):
        for n in range(bias.shape[0]):
            out[m, n] += bias[n]
    return out


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def decode_block(x: np.ndarray, norm_attn: tuple, qkv: tuple, proj: tuple, norm_mlp: tuple, fc: tuple, down: tuple,
                 k_cache: np.ndarray, v_cache: np.ndarray, positions: np.ndarray, keys: np.ndarray, cos: np.ndarray,
                 sin: np.ndarray, n_head: int, activation: int, n_hidden: int, window: int) -> None:
    """One new token of each of ``M`` rows through one pre-norm block, ``x (M, C)`` updated in place:
    ``x += proj(attend(rope(qkv(norm(x)))))``, then ``x += down(act(fc(norm(x))))`` — ``act`` one of
    :data:`SWIGLU` (``fc`` = gate|up: ``silu(gate) · up``), ``GELU_TANH``, ``GELU``, ``RELU``, ``SILU``; norms as
    :func:`_norm`. Row ``m``'s new key and value go to position ``positions[m]`` of its row of ``k_cache,
    v_cache (M, H_kv, max_len, D)``, and its query attends to its positions ``positions[m] - window + 1 ..
    positions[m]`` (``window`` 0: all from 0) where ``keys (M, S)`` is True (padding: False; its own position always
    counts; an empty ``keys``: every position). ``cos, sin (M, D)``: each row's rotation (empty: no rotation, the
    positions are already in ``x``)."""
    m_rows, n_kv, d = x.shape[0], k_cache.shape[1], k_cache.shape[3]
    half, per_kv = d // 2, n_head // n_kv
    heads = _packed_linear(_norm(x, norm_attn), qkv)  # (M, (H + 2 H_kv) · D rounded up)
    q = np.empty((m_rows, n_head, d), dtype=np.float32)
    rotate = cos.shape[1] > 0
    for m in range(m_rows):
        pos = positions[m]
        for h in range(n_head + n_kv):  # rotate queries and keys: (a, b) → (a·cos - b·sin, b·cos + a·sin) per half
            dst = q[m, h] if h < n_head else k_cache[m, h - n_head, pos]
            if not rotate:
                dst[:] = heads[m, h * d:(h + 1) * d]
                continue
            for i in range(half):
                a, b = heads[m, h * d + i], heads[m, h * d + half + i]
                dst[i], dst[half + i] = a * cos[m, i] - b * sin[m, i], b * cos[m, half + i] + a * sin[m, half + i]
        for h in range(n_kv):
            for i in range(d):
                v_cache[m, h, pos, i] = heads[m, (n_head + n_kv + h) * d + i]
    y = np.empty((m_rows, n_head * d), dtype=np.float32)
    scale = np.float32(1) / np.sqrt(np.float32(d))
    for job in prange(m_rows * n_head):  # softmax(q·kᵀ/√D)·v per row and head, its key/value head h // (H / H_kv)
        m, h = job // n_head, job % n_head
        pos = positions[m]
        first = max(0, pos + 1 - window) if window > 0 else 0
        kh, vh = k_cache[m, h // per_kv], v_cache[m, h // per_kv]
        scores = np.empty(pos + 1 - first, dtype=np.float32)
        top = np.float32(-np.inf)
        for s in range(first, pos + 1):
            if keys.shape[0] and not keys[m, s] and s != pos:
                scores[s - first] = -np.inf
                continue
            dot = np.float32(0)
            for i in range(d):
                dot += q[m, h, i] * kh[s, i]
            scores[s - first] = dot * scale
            top = max(top, scores[s - first])
        total = np.float32(0)
        for s in range(scores.shape[0]):
            scores[s] = np.exp(scores[s] - top)
            total += scores[s]
        acc = np.zeros(d, dtype=np.float32)
        for s in range(scores.shape[0]):
            p = scores[s] / total
            for i in range(d):
                acc[i] += p * vh[first + s, i]
        y[m, h * d:(h + 1) * d] = acc
    attended = _packed_linear(y, proj)
    for m in range(m_rows):
        for i in range(x.shape[1]):
            x[m, i] += attended[m, i]
    hidden = _packed_linear(_norm(x, norm_mlp), fc)  # (M, hidden or 2 · hidden (SwiGLU), rounded up)
    mlp = _packed_linear(_activate(hidden, activation, n_hidden), down)
    for m in range(m_rows):
        for i in range(x.shape[1]):
            x[m, i] += mlp[m, i]
