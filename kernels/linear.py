"""The dense layers: BLAS sgemm through NumPy, with the bias (and activation) applied by a
Numba epilogue in the same pass, and Q, K, V as one GEMM on weights stacked at load.

Twins of numbert.layers.prepare / linear / linear_act / qkv. A GEMM is never called from
inside a Numba parallel loop: BLAS runs its own threads between the kernels.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import weights as W
from ..record import NO_RECORD
from .gelu import bias_act_

f32 = np.float32


def prepare(weights: W.BertWeights) -> W.BertWeights:
    """The weights laid out for the kernels, once at load: each layer's query, key and value
    stacked into one [3H, H] matrix (SelfAttention.qkv), so the projections are one GEMM."""
    layers = []
    for layer in weights.encoder.layer:
        sa = layer.attention.self
        stacked = W.Linear(np.ascontiguousarray(np.concatenate([sa.query.weight, sa.key.weight, sa.value.weight])),
                           np.concatenate([sa.query.bias, sa.key.bias, sa.value.bias]))  # [3H, H], [3H]
        attention = dataclasses.replace(layer.attention, self=dataclasses.replace(sa, qkv=stacked))
        layers.append(dataclasses.replace(layer, attention=attention))
    return dataclasses.replace(weights, encoder=W.Encoder(layer=tuple(layers)))


def _gemm(x, weight):  # [..., in], [out, in] -> [M, out] without the bias
    # x @ W^T: BLAS reads the [out, in] weight transposed in place (no copy), one sgemm for
    # all B*T rows.
    n_in = x.shape[-1]
    return np.ascontiguousarray(x, dtype=f32).reshape(-1, n_in) @ weight.T  # [M, out]


def linear(x, weight, bias):  # [..., in], [out, in], [out] -> [..., out]
    *lead, _ = x.shape
    y = bias_act_(_gemm(x, weight), bias, "identity")  # [M, out]
    return y.reshape(*lead, weight.shape[0])


def linear_act(x, weight, bias, act, record=NO_RECORD):  # [..., in], [out, in], [out], str -> [..., out]
    # BertIntermediate: GEMM, then bias + GELU in one pass over the [B*T, I] result.
    *lead, _ = x.shape
    y = bias_act_(_gemm(x, weight), bias, act)  # [M, I]
    return y.reshape(*lead, weight.shape[0])


def qkv(x, w: W.SelfAttention, record=NO_RECORD):  # [B, T, H], SelfAttention weights -> 3 x [B, T, H]
    if w.qkv is None:  # weights not prepared: three GEMMs, as the reference
        return (linear(x, w.query.weight, w.query.bias), linear(x, w.key.weight, w.key.bias),
                linear(x, w.value.weight, w.value.bias))
    H = w.query.weight.shape[0]
    y = linear(x, w.qkv.weight, w.qkv.bias)  # [B, T, 3H]
    return y[..., :H], y[..., H:2 * H], y[..., 2 * H:]  # views: the attention kernel reads them strided
