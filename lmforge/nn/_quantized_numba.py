"""The matmul kernels behind :mod:`lmforge.nn.quantized`, compiled with numba: ``x (M, K) @ W.T`` for a few rows
``M`` (decoding) while ``W (N, K)`` stays packed, so each weight byte is read once per call.

Two layouts (see :mod:`lmforge.nn.quantized` for what each format becomes):

- 4-bit: ``q (N, K/2) uint8``, byte ``j`` of a row holds weights ``2j`` (low nibble) and ``2j+1`` (high nibble);
  ``scale, zero (N, K/g) float32``; ``w = q * scale + zero``. Per group the kernel sums ``q·x`` and ``x`` once, so
  ``Σ w·x = scale·Σ q·x + zero·Σ x``.
- 8-bit: ``q (N, K) int8``, ``scale (N, K/g) float32``; ``w = q * scale``.

Rows of ``W`` are spread over the threads (``prange``); every thread reads its own rows once for all ``M`` rows
of ``x``. Sums are float32, as in an fp32 matmul.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_int4(x: np.ndarray, q: np.ndarray, scale: np.ndarray, zero: np.ndarray, group: int) -> np.ndarray:
    """``x (M, K)`` → ``(M, N)`` for ``w = q * scale + zero`` (nibbles ``q (N, K/2)``, groups of ``group``)."""
    m_rows, k_cols = x.shape
    half = k_cols // 2
    n_rows = q.shape[0]
    n_groups = scale.shape[1]
    half_group = group // 2
    # even and odd columns of x apart (so the inner loop reads both contiguously), and x summed per group
    x_even = np.empty((m_rows, half), dtype=np.float32)
    x_odd = np.empty((m_rows, half), dtype=np.float32)
    x_sum = np.zeros((m_rows, n_groups), dtype=np.float32)
    for m in range(m_rows):
        for j in range(half):
            x_even[m, j] = x[m, 2 * j]
            x_odd[m, j] = x[m, 2 * j + 1]
            x_sum[m, (2 * j) // group] += x[m, 2 * j] + x[m, 2 * j + 1]
    out = np.empty((m_rows, n_rows), dtype=np.float32)
    for n in prange(n_rows):
        for m in range(m_rows):
            total = np.float32(0.0)
            for grp in range(n_groups):
                start = grp * half_group
                acc = np.float32(0.0)
                for j in range(start, start + half_group):
                    byte = np.int32(q[n, j])  # int32 arithmetic: the loop vectorizes (uint8 → int64 would not)
                    acc += (np.float32(byte & np.int32(15)) * x_even[m, j]
                            + np.float32(byte >> np.int32(4)) * x_odd[m, j])
                total += scale[n, grp] * acc + zero[n, grp] * x_sum[m, grp]
            out[m, n] = total
    return out


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_int8(x: np.ndarray, q: np.ndarray, scale: np.ndarray, group: int) -> np.ndarray:
    """``x (M, K)`` → ``(M, N)`` for ``w = q * scale`` in groups of ``group`` along K."""
    m_rows = x.shape[0]
    n_rows = q.shape[0]
    n_groups = scale.shape[1]
    out = np.empty((m_rows, n_rows), dtype=np.float32)
    for n in prange(n_rows):
        for m in range(m_rows):
            total = np.float32(0.0)
            for grp in range(n_groups):
                start = grp * group
                acc = np.float32(0.0)
                for k in range(start, start + group):
                    acc += np.float32(np.int32(q[n, k])) * x[m, k]
                total += scale[n, grp] * acc
            out[m, n] = total
    return out


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def dequantize_int4(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, group: int) -> np.ndarray:
    """The float32 matrix ``(N, K)`` of the 4-bit layout (for long prompts: one dequantize, then a GEMM)."""
    n_rows, half = q.shape
    out = np.empty((n_rows, 2 * half), dtype=np.float32)
    for n in prange(n_rows):
        for j in range(half):
            grp = (2 * j) // group
            byte = q[n, j]
            out[n, 2 * j] = np.float32(byte & 15) * scale[n, grp] + zero[n, grp]
            out[n, 2 * j + 1] = np.float32(byte >> 4) * scale[n, grp] + zero[n, grp]
    return out


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def dequantize_int8(q: np.ndarray, scale: np.ndarray, group: int) -> np.ndarray:
    """The float32 matrix ``(N, K)`` of the 8-bit layout."""
    n_rows, k_cols = q.shape
    out = np.empty((n_rows, k_cols), dtype=np.float32)
    for n in prange(n_rows):
        for k in range(k_cols):
            out[n, k] = np.float32(q[n, k]) * scale[n, k // group]
    return out
