"""The dense layers: BLAS sgemm through NumPy, with the bias (and activation) applied by a
Numba epilogue in the same pass. Twins of numbert.layers.linear / linear_act.

A GEMM is never called from inside a Numba parallel loop: BLAS runs its own threads between
the kernels. (Q, K and V as one GEMM is `linear` on the three weights stacked: the backend
adapter, numbert.backend, stacks them once at load.)
"""

from __future__ import annotations

import numpy as np

from .gelu import bias_act_

f32 = np.float32


def _gemm(x, weight):  # [..., in], [out, in] -> [M, out] without the bias
    # x @ W^T: BLAS reads the [out, in] weight transposed in place (no copy), one sgemm for
    # all B*T rows.
    n_in = x.shape[-1]
    return np.ascontiguousarray(x, dtype=f32).reshape(-1, n_in) @ weight.T  # [M, out]


def linear(x, weight, bias):  # [..., in], [out, in], [out] -> [..., out]
    *lead, _ = x.shape
    y = bias_act_(_gemm(x, weight), bias, "identity")  # [M, out]
    return y.reshape(*lead, weight.shape[0])


def linear_act(x, weight, bias, act):  # [..., in], [out, in], [out], function name -> [..., out]
    # BertIntermediate: GEMM, then bias + activation (gelu / gelu_tanh / relu) in one pass over
    # the [B*T, I] result.
    *lead, _ = x.shape
    y = bias_act_(_gemm(x, weight), bias, act)  # [M, I]
    return y.reshape(*lead, weight.shape[0])
