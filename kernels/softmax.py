"""Softmax, the twin of numbert.layers.softmax. One task per row; max, exp and sum in one
pass over the row while it sits in L1."""

from __future__ import annotations

import numpy as np

from .jit import jit, pjit, prange
from .scalar import exp_f32

f32 = np.float32


@jit
def softmax_row_(row):  # [n] in place
    n = row.shape[0]
    m = row[0]
    for j in range(1, n):
        m = max(m, row[j])
    s = f32(0.0)
    for j in range(n):
        e = exp_f32(row[j] - m)
        row[j] = e
        s += e
    inv = f32(1.0) / s
    for j in range(n):
        row[j] *= inv


@pjit
def _softmax_rows(x, out):  # [M, n] -> out [M, n]
    M, n = x.shape
    for i in prange(M):
        row = out[i]
        for j in range(n):
            row[j] = x[i, j]
        softmax_row_(row)


def softmax(x):  # [..., n] -> [..., n]
    n = x.shape[-1]
    out = np.empty(x.shape, f32)
    if out.size:
        _softmax_rows(np.ascontiguousarray(x, dtype=f32).reshape(-1, n), out.reshape(-1, n), work=out.size)
    return out
