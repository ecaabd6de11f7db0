"""Activations, the twins of numbert.layers.erf / gelu / gelu_tanh / relu, and the
bias + activation fused into one pass over the feed-forward GEMM's output."""

from __future__ import annotations

import math

import numpy as np

from .jit import jit, pjit, prange
from .scalar import erf_f32, tanh_f32

f32 = np.float32

# activation function name (numbert.config.ACTIVATIONS maps hidden_act to it) -> the code the
# fused kernel switches on: one compiled kernel for all of them
ACT_CODES = {"identity": 0, "gelu": 1, "gelu_tanh": 2, "relu": 3}

_SQRT_HALF = f32(1.0 / math.sqrt(2.0))
_TANH_C = f32(math.sqrt(2.0 / math.pi))


@jit
def bias_act_span(row, bias, code, n0, n1):  # row [N] in place, [N], int: columns n0..n1
    # row[j] = act(row[j] + bias[j]) for n0 <= j < n1, the loop over j vectorised. Serial: the
    # whole-array pass below calls it per row, and the GEMM (kernels.linear) per row of a tile
    # it has just written, while the tile is still in cache.
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
