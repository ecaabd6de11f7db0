"""Softmax, and the scaled, masked softmax of attention scores: twins of
numbert.layers.softmax and masked_softmax. One task per row; max, exp and sum in one
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


@pjit
def _masked_softmax_rows(scores, bias, scale, rows_per_b, out):  # [M, n], [B, n], f32, int -> out [M, n]
    M, n = scores.shape
    for i in prange(M):
        b = i // rows_per_b
        row = out[i]
        for j in range(n):
            row[j] = scores[i, j] * scale + bias[b, j]
        softmax_row_(row)


def softmax(x):  # [..., n] -> [..., n]
    n = x.shape[-1]
    out = np.empty(x.shape, f32)
    if out.size:
        _softmax_rows(np.ascontiguousarray(x, dtype=f32).reshape(-1, n), out.reshape(-1, n))
    return out


def masked_softmax(scores, mask_bias, scale):  # [B, nh, Tq, Tk], [B, 1, 1, Tk], float -> [B, nh, Tq, Tk]
    B, nh, Tq, Tk = scores.shape
    bias = np.ascontiguousarray(np.broadcast_to(mask_bias, (B, 1, 1, Tk)), dtype=f32).reshape(B, Tk)  # [B, Tk]
    out = np.empty(scores.shape, f32)
    if out.size:
        _masked_softmax_rows(np.ascontiguousarray(scores, dtype=f32).reshape(-1, Tk), bias, f32(scale),
                             nh * Tq, out.reshape(-1, Tk))
    return out
