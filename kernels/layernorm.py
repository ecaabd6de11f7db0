"""LayerNorm, and LayerNorm fused with the residual add: twins of numbert.layers.layer_norm
and add_layer_norm. One task per token row: read x (+ residual) once into the output,
then mean, variance and the affine map over that row while it is in L1."""

from __future__ import annotations

import numpy as np

from .jit import jit, pjit, prange

f32 = np.float32


@jit
def normalize_row_(row, weight, bias, eps):  # [H] in place, [H], [H], float32
    # two passes as torch.nn.LayerNorm: mean, then the (biased) variance of x - mean
    H = row.shape[0]
    s = f32(0.0)
    for j in range(H):
        s += row[j]
    mean = s / f32(H)
    v = f32(0.0)
    for j in range(H):
        c = row[j] - mean
        v += c * c
    inv = f32(1.0) / np.sqrt(v / f32(H) + eps)
    for j in range(H):
        row[j] = (row[j] - mean) * inv * weight[j] + bias[j]


@pjit
def _add_layer_norm_rows(x, residual, weight, bias, eps, out):  # [M, H], [M, H] or [0, H], ... -> out [M, H]
    M, H = x.shape
    add = residual.shape[0] > 0
    for i in prange(M):
        row = out[i]
        if add:
            for j in range(H):
                row[j] = x[i, j] + residual[i, j]
        else:
            for j in range(H):
                row[j] = x[i, j]
        normalize_row_(row, weight, bias, eps)


def _rows(a, H):  # [..., H] -> [M, H] float32 C-contiguous (a view when it already is)
    return np.ascontiguousarray(a, dtype=f32).reshape(-1, H)


def layer_norm(x, weight, bias, eps):  # [..., H], [H], [H] -> [..., H]
    H = x.shape[-1]
    out = np.empty(x.shape, f32)
    # "no residual", read-only as add_layer_norm's residual (a broadcast view) is: Numba compiles
    # per argument type, read-only included, so both calls share one compiled kernel
    no_residual = np.broadcast_to(np.empty((0, H), f32), (0, H))  # [0, H]
    _add_layer_norm_rows(_rows(x, H), no_residual, weight, bias, f32(eps), out.reshape(-1, H), work=out.size)
    return out


def add_layer_norm(x, residual, weight, bias, eps):  # [..., H], [..., H] -> [..., H]
    H = x.shape[-1]
    out = np.empty(x.shape, f32)
    _add_layer_norm_rows(_rows(x, H), _rows(np.broadcast_to(residual, x.shape), H), weight, bias, f32(eps),
                         out.reshape(-1, H), work=out.size)
    return out
