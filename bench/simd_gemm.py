"""A prototype, not used by numbert: the short-input GEMM with explicit vectors, on weights packed
once into panels. `python -m bench.simd_gemm` times it against numbert's Numba GEMM and BLAS.

Why it is here. On short inputs (M = B*T <= 64 rows) numbert's dense layers run a Numba GEMM
(numbert.kernels.linear) whose loops LLVM vectorises on its own: 4 rows of x by 4 rows of W,
16 running sums along K, each folded across the vector lanes at the end. It runs at 30-60
GFLOP/s on 2 cores, at or below OpenBLAS, and ONNX Runtime, whose MLAS kernels read weights
packed at session start, runs BERT-base 1x16 in half numbert's time (bench/results.md).

What this tries: the register tile of BLAS kernels, written in Numba. A Numba type holds an
LLVM <16 x float> value (one AVX-512 register), and five intrinsics (numba.extending.intrinsic)
load, store, broadcast, zero and fused-multiply-add such values. The kernel keeps an 8 x 32
tile of y in 16 such registers for the whole pass over K: each step loads 32 weights (two
vectors), broadcasts one number of each of the 8 rows of x, and does 16 vector multiply-adds.
The weights are packed at "load" (here: before timing) into panels of 32 output columns,
[N/32, K, 32], so that the pass reads one contiguous stream. Unpacked, reading the same 32
columns of W^T [K, N] with a row stride of N, it ran at half that rate.

Measured (2-core Intel Xeon, Emerald Rapids, AVX-512, 2 threads, fp32; 12 different weights
of each shape in turn, so that they come from memory; interleaved medians of 7): at M = 16,
51-80 GFLOP/s against 31-48 for numbert's kernel and 44-57 for OpenBLAS; at M = 32, 79-136
against 41-61 and 76-96. That is the next step for the short-input points of issue 9, with
what this prototype leaves out: a tile for the rows left over (M not a multiple of 8; here one
row at a time), N not a multiple of 32 (padded panels), the bias/activation epilogue, a
narrower vector for CPUs without AVX-512 (LLVM splits a 16-lane vector into two AVX2 registers,
and 32 of them do not fit in 16), plain-Python twins of the intrinsics for NUMBA_DISABLE_JIT,
and where the packed panels live (a second copy of every dense weight, unless the packed form
replaces the checkpoint's [N, K] arrays for the BLAS path too).
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

f32 = np.float32
V = 16  # float32 lanes of one vector value (an AVX-512 register)
NR = 2 * V  # output columns per panel
MR = 8  # rows of x per register tile
_VT = ir.VectorType(ir.FloatType(), V)


class F32x16(types.Type):
    """A Numba type for 16 float32 lanes, held as one LLVM vector value."""

    def __init__(self):
        super().__init__(name="f32x16")


f32x16 = F32x16()


@register_model(F32x16)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VT)


def _vector_ptr(context, builder, arrty, arr, idx):  # &arr[idx] as a <16 x float>*
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [idx]), _VT.as_pointer())


@intrinsic
def vzero(typingctx):  # -> 16 zeros
    return f32x16(), lambda context, builder, sig, args: ir.Constant(_VT, None)


@intrinsic
def vload(typingctx, arr, idx):  # arr [n] float32 contiguous, idx -> arr[idx:idx+16]
    def codegen(context, builder, sig, args):
        return builder.load(_vector_ptr(context, builder, sig.args[0], *args), align=4)

    return f32x16(arr, idx), codegen


@intrinsic
def vstore(typingctx, arr, idx, v):  # arr[idx:idx+16] = v
    def codegen(context, builder, sig, args):
        builder.store(args[2], _vector_ptr(context, builder, sig.args[0], args[0], args[1]), align=4)
        return context.get_dummy_value()

    return types.none(arr, idx, v), codegen


@intrinsic
def vbroadcast(typingctx, x):  # float32 -> 16 lanes of it
    def codegen(context, builder, sig, args):
        one = builder.insert_element(ir.Constant(_VT, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(_VT, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), V), [0] * V))

    return f32x16(types.float32), codegen


@intrinsic
def vfma(typingctx, a, b, c):  # a * b + c, lane by lane, one rounding
    def codegen(context, builder, sig, args):
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VT, [_VT] * 3), "llvm.fma.v16f32")
        return builder.call(fma, args)

    return f32x16(f32x16, f32x16, f32x16), codegen


def pack(weight):  # [N, K] -> [P, K * NR] panels of NR output columns (N padded with zeros)
    N, K = weight.shape
    P = -(-N // NR)
    panels = np.zeros((P, K, NR), f32)
    for p in range(P):
        cols = weight[p * NR:(p + 1) * NR]  # [<= NR, K]
        panels[p, :, :cols.shape[0]] = cols.T
    return panels.reshape(P, K * NR)


_OPTS = dict(fastmath=True, nogil=True, error_model="numpy")


@numba.njit(**_OPTS)
def _tile8(x, i, panel, y, n0):  # rows i..i+7 of x [M, K] x one panel [K * NR] -> y[i:i+8, n0:n0+NR]
    K = x.shape[1]
    c00 = vzero(); c01 = vzero(); c10 = vzero(); c11 = vzero()  # noqa: E702
    c20 = vzero(); c21 = vzero(); c30 = vzero(); c31 = vzero()  # noqa: E702
    c40 = vzero(); c41 = vzero(); c50 = vzero(); c51 = vzero()  # noqa: E702
    c60 = vzero(); c61 = vzero(); c70 = vzero(); c71 = vzero()  # noqa: E702
    x0, x1, x2, x3, x4, x5, x6, x7 = x[i], x[i + 1], x[i + 2], x[i + 3], x[i + 4], x[i + 5], x[i + 6], x[i + 7]
    for k in range(K):
        b0 = vload(panel, k * NR)
        b1 = vload(panel, k * NR + V)
        a = vbroadcast(x0[k]); c00 = vfma(a, b0, c00); c01 = vfma(a, b1, c01)  # noqa: E702
        a = vbroadcast(x1[k]); c10 = vfma(a, b0, c10); c11 = vfma(a, b1, c11)  # noqa: E702
        a = vbroadcast(x2[k]); c20 = vfma(a, b0, c20); c21 = vfma(a, b1, c21)  # noqa: E702
        a = vbroadcast(x3[k]); c30 = vfma(a, b0, c30); c31 = vfma(a, b1, c31)  # noqa: E702
        a = vbroadcast(x4[k]); c40 = vfma(a, b0, c40); c41 = vfma(a, b1, c41)  # noqa: E702
        a = vbroadcast(x5[k]); c50 = vfma(a, b0, c50); c51 = vfma(a, b1, c51)  # noqa: E702
        a = vbroadcast(x6[k]); c60 = vfma(a, b0, c60); c61 = vfma(a, b1, c61)  # noqa: E702
        a = vbroadcast(x7[k]); c70 = vfma(a, b0, c70); c71 = vfma(a, b1, c71)  # noqa: E702
    vstore(y[i], n0, c00); vstore(y[i], n0 + V, c01)  # noqa: E702
    vstore(y[i + 1], n0, c10); vstore(y[i + 1], n0 + V, c11)  # noqa: E702
    vstore(y[i + 2], n0, c20); vstore(y[i + 2], n0 + V, c21)  # noqa: E702
    vstore(y[i + 3], n0, c30); vstore(y[i + 3], n0 + V, c31)  # noqa: E702
    vstore(y[i + 4], n0, c40); vstore(y[i + 4], n0 + V, c41)  # noqa: E702
    vstore(y[i + 5], n0, c50); vstore(y[i + 5], n0 + V, c51)  # noqa: E702
    vstore(y[i + 6], n0, c60); vstore(y[i + 6], n0 + V, c61)  # noqa: E702
    vstore(y[i + 7], n0, c70); vstore(y[i + 7], n0 + V, c71)  # noqa: E702


@numba.njit(**_OPTS)
def _tile1(x, i, panel, y, n0):  # one row of x x one panel (the rows after the last tile of 8)
    K = x.shape[1]
    c0 = vzero()
    c1 = vzero()
    xi = x[i]
    for k in range(K):
        a = vbroadcast(xi[k])
        c0 = vfma(a, vload(panel, k * NR), c0)
        c1 = vfma(a, vload(panel, k * NR + V), c1)
    vstore(y[i], n0, c0)
    vstore(y[i], n0 + V, c1)


@numba.njit(parallel=True, **_OPTS)
def gemm(x, panels, parts, y):  # x [M, K], panels [P, K * NR], parts -> y [M, P * NR] = x @ W^T
    M = x.shape[0]
    P = panels.shape[0]
    for t in numba.prange(parts):  # one share of the panels (output columns) per thread
        for p in range(P * t // parts, P * (t + 1) // parts):
            i = 0
            while i + MR <= M:
                _tile8(x, i, panels[p], y, p * NR)
                i += MR
            while i < M:
                _tile1(x, i, panels[p], y, p * NR)
                i += 1


SHAPES = {"bert-base": ((768, 768), (3072, 768), (768, 3072), (2304, 768)),
          "minilm": ((384, 384), (1536, 384), (384, 1536), (1152, 384))}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.simd_gemm")
    ap.add_argument("--rows", default="16,32,64,128")
    ap.add_argument("--models", default="bert-base,minilm")
    ap.add_argument("--weights", type=int, default=12, help="different weights of each shape, timed in turn")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    from numbert.kernels import jit

    linear = importlib.import_module("numbert.kernels.linear")  # the module (numbert.kernels.linear is a function)
    jit.set_num_threads(args.threads)
    threadpool_limits(args.threads, user_api="blas")
    rng = np.random.default_rng(0)
    print("GFLOP/s (2*M*N*K / median time):\n")
    print("| model | weight [out x in] | M | simd | numbert | blas | simd / numbert | simd / blas |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        for M in (int(m) for m in args.rows.split(",")):
            for N, K in SHAPES[model]:
                ws = [rng.standard_normal((N, K), dtype=f32) for _ in range(args.weights)]
                packed = [pack(w) for w in ws]
                x = rng.standard_normal((M, K), dtype=f32)
                zero = np.zeros(N, f32)
                y = np.empty((M, packed[0].shape[0] * NR), f32)
                calls = {"simd": lambda w, p: gemm(x, p, args.threads, y),
                         "numbert": lambda w, p: linear._linear_tiles(x, w, zero, 0, args.threads, y[:, :N]),
                         "blas": lambda w, p: np.matmul(x, w.T, out=y[:, :N])}
                for f in calls.values():
                    f(ws[0], packed[0])
                gemm(x, packed[0], args.threads, y)
                err = float(np.abs(y[:, :N] - x @ ws[0].T).max() / np.abs(x @ ws[0].T).max())
                times = {k: [] for k in calls}
                for r in range(args.repeats):
                    for name in (list(calls) if r % 2 else list(calls)[::-1]):
                        time.sleep(0.05)  # let BLAS's pool stop spinning before a Numba kernel
                        t = time.perf_counter()
                        for w, p in zip(ws, packed):
                            calls[name](w, p)
                        times[name].append(time.perf_counter() - t)
                rate = {k: 2 * M * N * K * len(ws) / statistics.median(v) / 1e9 for k, v in times.items()}
                print(f"| {model} | {N}x{K} | {M} | {rate['simd']:.0f} | {rate['numbert']:.0f} | {rate['blas']:.0f} | "
                      f"{rate['simd'] / rate['numbert']:.2f} | {rate['simd'] / rate['blas']:.2f} |"
                      + (f" relative error {err:.1e}" if err > 1e-5 else ""), flush=True)


if __name__ == "__main__":
    main()
