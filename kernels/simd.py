"""Explicit vectors for Numba kernels: a type for 16 float32 lanes (one AVX-512 register) and
the five operations the dense layers' register tile needs (kernels/linear.py).

LLVM vectorises a plain loop by itself, but it decides the shape: for a GEMM it keeps sums
along K and folds each across the lanes at the end. A BLAS-style tile instead keeps a block
of y in registers, [rows x 32 columns], for the whole pass over K; each step loads 32 weights
(two vectors), broadcasts one number of x per row, and multiply-adds. Numba has no vector
type, so this module adds one: `F32x16`, whose values are LLVM <16 x float> values (SSA
registers), made and used through `numba.extending.intrinsic`:

    vzero()             16 zeros
    vload(a, i)         a[i:i+16] of a contiguous float32 array
    vstore(a, i, v)     a[i:i+16] = v
    vbroadcast(x)       16 copies of the float32 x
    vfma(a, b, c)       a * b + c lane by lane, rounded once (llvm.fma)

AVAILABLE says whether the kernels built on them should run: the CPU has AVX-512 (with AVX2
only, LLVM would split each value into two registers, and a tile of 16 values would not fit
in the 16 registers there), and Numba compiles (under NUMBA_DISABLE_JIT the intrinsics
cannot run, so the same names are plain NumPy functions, for the kernels' logic alone).
"""

from __future__ import annotations

import numba
import numpy as np

f32 = np.float32
V = 16  # float32 lanes of one value


def _host_has_avx512() -> bool:
    try:
        import llvmlite.binding as llvm

        return bool(llvm.get_host_cpu_features().get("avx512f", False))
    except Exception:  # a CPU or llvmlite that cannot say: the plain kernels
        return False


AVAILABLE = not numba.config.DISABLE_JIT and _host_has_avx512()

if numba.config.DISABLE_JIT:  # plain Python twins, so that the kernels run (slowly) without the compiler

    def vzero():
        return np.zeros(V, f32)

    def vload(a, i):
        return a[i:i + V].copy()

    def vstore(a, i, v):
        a[i:i + V] = v

    def vbroadcast(x):
        return np.full(V, x, f32)

    def vfma(a, b, c):
        return (a * b + c).astype(f32)

else:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic, models, register_model

    _VT = ir.VectorType(ir.FloatType(), V)

    class F32x16(types.Type):
        """16 float32 lanes, held as one LLVM vector value."""

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
    def vzero(typingctx):
        return f32x16(), lambda context, builder, sig, args: ir.Constant(_VT, None)

    @intrinsic
    def vload(typingctx, arr, idx):
        def codegen(context, builder, sig, args):
            return builder.load(_vector_ptr(context, builder, sig.args[0], *args), align=4)

        return f32x16(arr, idx), codegen

    @intrinsic
    def vstore(typingctx, arr, idx, v):
        def codegen(context, builder, sig, args):
            builder.store(args[2], _vector_ptr(context, builder, sig.args[0], args[0], args[1]), align=4)
            return context.get_dummy_value()

        return types.none(arr, idx, v), codegen

    @intrinsic
    def vbroadcast(typingctx, x):
        def codegen(context, builder, sig, args):
            one = builder.insert_element(ir.Constant(_VT, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(one, ir.Constant(_VT, ir.Undefined),
                                          ir.Constant(ir.VectorType(ir.IntType(32), V), [0] * V))

        return f32x16(types.float32), codegen

    @intrinsic
    def vfma(typingctx, a, b, c):
        def codegen(context, builder, sig, args):
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VT, [_VT] * 3), "llvm.fma.v16f32")
            return builder.call(fma, args)

        return f32x16(f32x16, f32x16, f32x16), codegen
