"""Activations, the twins of numbert.layers.erf / gelu / gelu_tanh / relu, and the
bias + activation fused into one pass over the feed-forward GEMM's output."""

from __future__ import annotations

import math

import numpy as np

from .jit import jit, pjit, prange
from .scalar import ERF_P, ERF_Q, erf_f32, tanh_f32
from .simd import AVAILABLE as VECTORS
from .simd import V, vadd, vbroadcast, vdiv, vfma, vload, vmax, vmin, vmul, vstore

f32 = np.float32

# activation function name (numbert.config.ACTIVATIONS maps hidden_act to it) -> the code the
# fused kernel switches on: one compiled kernel for all of them
ACT_CODES = {"identity": 0, "gelu": 1, "gelu_tanh": 2, "relu": 3}

_SQRT_HALF = f32(1.0 / math.sqrt(2.0))
_TANH_C = f32(math.sqrt(2.0 / math.pi))


@jit
def _verf(x):  # 16 lanes of erf_f32 (kernels/scalar.py): the same clamp and rational function
    x = vmin(vmax(x, vbroadcast(f32(-4.0))), vbroadcast(f32(4.0)))
    x2 = vmul(x, x)
    p = vbroadcast(ERF_P[0])
    for c in ERF_P[1:]:
        p = vfma(p, x2, vbroadcast(c))
    q = vbroadcast(ERF_Q[0])
    for c in ERF_Q[1:]:
        q = vfma(q, x2, vbroadcast(c))
    return vdiv(vmul(x, p), q)


@jit
def _bias_act_vectors(row, bias, code, n0, n1):  # as bias_act_span, 16 columns at a time -> first column left
    j = n0
    if code == 1:
        half, one, scale = vbroadcast(f32(0.5)), vbroadcast(f32(1.0)), vbroadcast(_SQRT_HALF)
        while j + V <= n1:
            x = vadd(vload(row, j), vload(bias, j))
            vstore(row, j, vmul(vmul(half, x), vadd(one, _verf(vmul(x, scale)))))
            j += V
    elif code == 3:
        zero = vbroadcast(f32(0.0))
        while j + V <= n1:
            vstore(row, j, vmax(vadd(vload(row, j), vload(bias, j)), zero))
            j += V
    elif code == 0:
        while j + V <= n1:
            vstore(row, j, vadd(vload(row, j), vload(bias, j)))
            j += V
    return j  # tanh GELU: all of it left to the scalar loop


@jit
def bias_act_span(row, bias, code, n0, n1):  # row [N] in place, [N], int: columns n0..n1
    # row[j] = act(row[j] + bias[j]) for n0 <= j < n1. Serial: the whole-array pass below calls it
    # per row, and the GEMM (kernels.linear) per row of a tile it has just written, while the
    # tile is still in cache. LLVM left the scalar loops below scalar (one vdivss per element of
    # GELU, 3.7-4.0 ns each on one core of the Xeon), so on AVX-512 whole vectors go first, on
    # kernels/simd.py's explicit vectors; the scalar loops take the rest. Measured (2-core Xeon,
    # 2 threads): bias + GELU over 128 x 3072 0.30 -> 0.075 ms, over 1024 x 3072 1.04 -> 0.56 ms;
    # inside the packed GEMM, BERT-base's 12 intermediate layers at 128 rows 34.9 -> 26.3 ms
    # (25.8 with no activation at all).
    if VECTORS:
        n0 = _bias_act_vectors(row, bias, code, n0, n1)
    if code == 1:  # exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
        for j in range(n0, n1):
            x = row[j] + bias[j]
            row[j] = f32(0.5) * x * (f32(1.0) + erf_f32(x * _SQRT_HALF))
    elif code == 2:  # tanh GELU
        for j in range(n0, n1):
            x = row[j] + bias[j]
            row[j] = f32(0.5) * x * (f32(1.0) + tanh_f32(_TANH_C * (x + f32(0.044715) * x * x * x)))
    elif code == 3:
        for j in range(n0, n1):
            row[j] = max(row[j] + bias[j], f32(0.0))
    else:
        for j in range(n0, n1):
            row[j] = row[j] + bias[j]


@pjit
def _bias_act_rows(y, bias, code):  # [M, N] in place, [N], int
    # y[i, j] = act(y[i, j] + bias[j]): a row per task.
    M, N = y.shape
    for i in prange(M):
        bias_act_span(y[i], bias, code, 0, N)


def bias_act_(y, bias, act):  # [..., N] float32 C-contiguous (modified in place), [N], name -> y
    """act(y + bias) written back into y: the epilogue of a GEMM, one read and one write."""
    _bias_act_rows(y.reshape(-1, y.shape[-1]), bias, ACT_CODES[act], work=y.size)
    return y


def _apply(x, act):  # [...] -> [...] a new float32 array
    y = np.array(x, dtype=f32, order="C", copy=True)
    if y.ndim == 0:
        return bias_act_(y.reshape(1, 1), np.zeros(1, f32), act).reshape(())
    return bias_act_(y, np.zeros(y.shape[-1], f32), act)


def erf(x):  # [...] -> [...]
    y = np.array(x, dtype=f32, order="C", copy=True)
    flat = y.reshape(1, -1)
    _erf_rows(flat, work=flat.size)
    return y


@pjit
def _erf_rows(y):  # [M, N] in place
    M, N = y.shape
    for i in prange(M):
        for j in range(N):
            y[i, j] = erf_f32(y[i, j])


def gelu(x):  # [...] -> [...]
    return _apply(x, "gelu")


def gelu_tanh(x):  # [...] -> [...]
    return _apply(x, "gelu_tanh")


def relu(x):  # [...] -> [...]
    return _apply(x, "relu")
