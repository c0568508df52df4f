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

Tiles are spread over the threads (``prange``). Sums are float32, as in an fp32 matmul. Nibbles are split in
float arithmetic (``hi = floor(b / 16)``, ``lo = b - 16·hi``): numba widens integer shifts to int64, which
halves the lanes per instruction.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_int4(x: np.ndarray, q: np.ndarray, scale: np.ndarray, zero: np.ndarray, group: int) -> np.ndarray:
    """``x (M, K)`` → ``(M, N/T·T)`` for ``w = q * scale + zero`` (tiled nibbles ``q (N/T, K/2, T)``)."""
    m_rows, k_cols = x.shape
    half = k_cols // 2
    n_tiles, _, tile = q.shape
    n_groups = scale.shape[1]
    half_group = group // 2  # byte columns per group (even: groups are 32..256 weights)
    x_even = np.empty((m_rows, half), dtype=np.float32)
    x_odd = np.empty((m_rows, half), dtype=np.float32)
    x_sum = np.zeros((m_rows, n_groups), dtype=np.float32)
    for m in range(m_rows):
        for j in range(half):
            x_even[m, j] = x[m, 2 * j]
            x_odd[m, j] = x[m, 2 * j + 1]
            x_sum[m, j // half_group] += x[m, 2 * j] + x[m, 2 * j + 1]
    out = np.empty((m_rows, n_tiles * tile), dtype=np.float32)
    for t in prange(n_tiles):
        qt, st, zt = q[t], scale[t], zero[t]
        part = np.empty(tile, dtype=np.float32)
        acc = np.empty(tile, dtype=np.float32)
        for m in range(m_rows):
            xe, xo = x_even[m], x_odd[m]
            acc[:] = 0
            for grp in range(n_groups):
                part[:] = 0
                for j in range(grp * half_group, (grp + 1) * half_group, 2):  # two byte columns per pass
                    a0, b0, a1, b1 = xe[j], xo[j], xe[j + 1], xo[j + 1]
                    r0, r1 = qt[j], qt[j + 1]
                    for lane in range(tile):
                        f0 = np.float32(np.uint32(r0[lane]))
                        h0 = np.floor(f0 * np.float32(0.0625))
                        f1 = np.float32(np.uint32(r1[lane]))
                        h1 = np.floor(f1 * np.float32(0.0625))
                        part[lane] += (((f0 - np.float32(16.0) * h0) * a0 + h0 * b0)
                                       + ((f1 - np.float32(16.0) * h1) * a1 + h1 * b1))
                s, z, xg = st[grp], zt[grp], x_sum[m, grp]
                for lane in range(tile):
                    acc[lane] += s[lane] * part[lane] + z[lane] * xg
            out[m, t * tile:(t + 1) * tile] = acc
    return out


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_int8(x: np.ndarray, q: np.ndarray, scale: np.ndarray, group: int) -> np.ndarray:
    """``x (M, K)`` → ``(M, N/T·T)`` for ``w = q * scale`` (tiled ``q (N/T, K, T)``, groups of ``group``)."""
    m_rows = x.shape[0]
    n_tiles, _, tile = q.shape
    n_groups = scale.shape[1]
    out = np.empty((m_rows, n_tiles * tile), dtype=np.float32)
    for t in prange(n_tiles):
        qt, st = q[t], scale[t]
        part = np.empty(tile, dtype=np.float32)
        acc = np.empty(tile, dtype=np.float32)
        for m in range(m_rows):
            xm = x[m]
            acc[:] = 0
            for grp in range(n_groups):
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
            out[m, t * tile:(t + 1) * tile] = acc
    return out


@njit(parallel=True, cache=True)  # no fastmath: q·scale + zero rounded as the reference does (no fused multiply-add)
def dequantize_int4(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, group: int) -> np.ndarray:
    """The float32 matrix ``(N/T·T, K)`` of the tiled 4-bit layout (for long prompts: one dequantize, then a GEMM)."""
    n_tiles, half, tile = q.shape
    out = np.empty((n_tiles * tile, 2 * half), dtype=np.float32)
    for t in prange(n_tiles):
        for lane in range(tile):
            n = t * tile + lane
            for j in range(half):
                grp = (2 * j) // group
                byte = q[t, j, lane]
                out[n, 2 * j] = np.float32(byte & 15) * scale[t, grp, lane] + zero[t, grp, lane]
                out[n, 2 * j + 1] = np.float32(byte >> 4) * scale[t, grp, lane] + zero[t, grp, lane]
    return out


@njit(parallel=True, cache=True)
def dequantize_int8(q: np.ndarray, scale: np.ndarray, group: int) -> np.ndarray:
    """The float32 matrix ``(N/T·T, K)`` of the tiled 8-bit layout."""
    n_tiles, k_cols, tile = q.shape
    out = np.empty((n_tiles * tile, k_cols), dtype=np.float32)
    for t in prange(n_tiles):
        for lane in range(tile):
            n = t * tile + lane
            for k in range(k_cols):
                out[n, k] = np.float32(q[t, k, lane]) * scale[t, k // group, lane]
    return out
