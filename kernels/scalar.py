"""Float32 exp, erf and tanh written as plain arithmetic, so that LLVM vectorises them.

Without Intel's SVML, a loop calling math.exp / math.erf / math.tanh makes one libm call
per element (erf costs ~20 ns): the feed-forward's GELU alone would then take longer than
its GEMM. These versions use only +, *, /, min/max and a bit shift, which compile to AVX
instructions 8 floats at a time. Each is within a few float32 ulps of the exact function;
tests/test_kernels.py checks them against NumPy / math.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import jit

f32 = np.float32

_LOG2E = f32(1.4426950408889634)
_LN2_HI = f32(0.693359375)  # ln 2 split in two so that n * ln2 subtracts exactly (Cephes)
_LN2_LO = f32(-2.12194440e-4)
_EXP_LO = f32(-87.3)  # below this exp(x) is (almost) a float32 denormal: we return 0
_EXP_HI = f32(88.0)  # exp(88.0) is near the float32 maximum: larger x saturates there


@jit
def exp_f32(x):  # float32 -> float32
    # exp(x) = 2**n * exp(r), n = round(x / ln2), |r| <= ln2 / 2; exp(r) by a degree-6
    # polynomial (Cephes expf), 2**n by writing n into the float's exponent bits.
    xc = min(max(x, _EXP_LO), _EXP_HI)
    n = math.floor(xc * _LOG2E + f32(0.5))
    r = xc - n * _LN2_HI - n * _LN2_LO
    p = f32(1.9875691500e-4)
    p = p * r + f32(1.3981999507e-3)
    p = p * r + f32(8.3334519073e-3)
    p = p * r + f32(4.1665795894e-2)
    p = p * r + f32(1.6666665459e-1)
    p = p * r + f32(5.0000001201e-1)
    p = p * r * r + r + f32(1.0)
    scale = np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)  # 2**n
    return f32(p * scale) if x > _EXP_LO else f32(0.0)


# The float32 erf of Eigen / XLA (numbert.layers.erf evaluates the same rational function in
# float64): erf(x) = x * P(x^2) / Q(x^2) on [-4, 4], +-1 beyond.
ERF_P = tuple(f32(c) for c in (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                                -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                                -1.60960333262415e-02))  # P, highest power first
ERF_Q = tuple(f32(c) for c in (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
                                -7.37332916720468e-03, -1.42647390514189e-02))  # Q, highest power first


@jit
def erf_f32(x):  # float32 -> float32
    x = min(max(x, f32(-4.0)), f32(4.0))
    x2 = x * x
    p = ERF_P[0]
    for c in ERF_P[1:]:
        p = p * x2 + c
    q = ERF_Q[0]
    for c in ERF_Q[1:]:
        q = q * x2 + c
    return f32(x * p / q)


@jit
def tanh_f32(x):  # float32 -> float32
    # tanh(x) = 1 - 2 / (exp(2x) + 1); |x| > 9 is +-1 to float32 precision.
    xc = min(max(x, f32(-9.0)), f32(9.0))
    return f32(f32(1.0) - f32(2.0) / (exp_f32(f32(2.0) * xc) + f32(1.0)))
