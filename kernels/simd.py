"""Explicit vectors for Numba kernels: a type for 16 float32 lanes (one AVX-512 register) and
the operations that the dense layers' register tile (kernels/linear.py) and the attention
kernel (kernels/attention.py) need.

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
    vbroadcast_at(a, i) 16 copies of a[i], a flat offset as vload's (no wrap-around of a
                        negative i: the tile's inner loop stays free of the index checks that
                        `vbroadcast(a[i])` brings when LLVM cannot prove i >= 0)
    vfma(a, b, c)       a * b + c lane by lane, rounded once (llvm.fma)
    vprefetch(a, i)     a hint to start bringing the cache line of a's number i into cache
                        (llvm.prefetch: no effect on any result, no fault past the array's end)

and, for the attention kernel's softmax and its transposes:

    vadd, vsub, vmul    a + b, a - b, a * b lane by lane
    vdiv(a, b)          a / b lane by lane (the dense layers' GELU epilogue, kernels/gelu.py)
    vmax(a, b)          the larger of each pair of lanes (llvm.maxnum)
    vmin(a, b)          the smaller (llvm.minnum)
    vfloor(a)           each lane rounded down (llvm.floor)
    vscale2(a, n)       a * 2**n for lanes n holding whole numbers (AVX-512's vscalefps: one
                        instruction, right at any n: 0 or inf where the result leaves float32)
    vkeep_above(a, x, t)  a where x > t, else 0, lane by lane
    vhmax(a), vhsum(a)  the largest lane, the sum of the lanes (a float32)
    vzip_lo(a, b)       a0 b0 a1 b1 ... a7 b7: the low halves of a and b interleaved
    vzip_hi(a, b)       a8 b8 ... a15 b15: the high halves interleaved

vload and vstore take a flat offset from the array's first element, counted in
numbers: the 16 numbers must lie next to each other in memory (a row of a C-contiguous array,
or any view whose last axis has a unit stride), and a 2-D array's row r starts at
r * (its row stride in numbers).

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


def _compiles_for_avx512() -> bool:
    # Numba compiles for this CPU unless NUMBA_CPU_NAME / NUMBA_CPU_FEATURES name another (a
    # portable cache, e.g. "generic"): then only features listed there count.
    if numba.config.CPU_NAME not in (None, "host"):
        return "+avx512f" in (numba.config.CPU_FEATURES or "").split(",")
    try:
        import llvmlite.binding as llvm

        return bool(llvm.get_host_cpu_features().get("avx512f", False))
    except Exception:  # a CPU or llvmlite that cannot say: the plain kernels
        return False


AVAILABLE = not numba.config.DISABLE_JIT and _compiles_for_avx512()
# the kernels built on them can run here at all: natively, or as NumPy under NUMBA_DISABLE_JIT
# (compiled for a CPU without AVX-512, vscale2's instruction would stop LLVM)
RUNNABLE = AVAILABLE or numba.config.DISABLE_JIT

if numba.config.DISABLE_JIT:  # plain Python twins, so that the kernels run (slowly) without the compiler
    import functools

    def _quiet(op):  # vector lanes overflow or turn NaN silently; so do their twins
        @functools.wraps(op)
        def quiet(*args):
            with np.errstate(all="ignore"):
                return op(*args)

        return quiet

    def vzero():
        return np.zeros(V, f32)

    def _lanes(a, i):  # the V numbers at a's first element + i, as a writable view
        return np.lib.stride_tricks.as_strided(a, shape=(i + V,), strides=(a.itemsize,))[i:]

    def vload(a, i):
        return _lanes(a, i).copy()

    def vstore(a, i, v):
        _lanes(a, i)[:] = v

    def vbroadcast(x):
        return np.full(V, x, f32)

    def vbroadcast_at(a, i):
        return np.full(V, _lanes(a, i)[0], f32)

    def vprefetch(a, i):  # a hint to the cache: nothing to do in NumPy
        return None

    @_quiet
    def vfma(a, b, c):
        return (a.astype(np.float64) * b + c).astype(f32)  # one rounding, as llvm.fma

    @_quiet
    def vadd(a, b):
        return (a + b).astype(f32)

    @_quiet
    def vsub(a, b):
        return (a - b).astype(f32)

    @_quiet
    def vmul(a, b):
        return (a * b).astype(f32)

    @_quiet
    def vdiv(a, b):
        return (a / b).astype(f32)

    def vmax(a, b):
        return np.fmax(a, b).astype(f32)

    def vmin(a, b):
        return np.fmin(a, b).astype(f32)

    @_quiet
    def vfloor(a):
        return np.floor(a).astype(f32)

    @_quiet
    def vscale2(a, n):
        return np.ldexp(a, np.nan_to_num(n, nan=0, posinf=1000, neginf=-1000).astype(np.int32)).astype(f32)

    def vkeep_above(a, x, t):
        return np.where(x > t, a, f32(0.0)).astype(f32)

    def vhmax(a):
        return f32(a.max())

    def vhsum(a):
        return f32(a.sum(dtype=f32))

    def vzip_lo(a, b):
        return np.stack([a[:V // 2], b[:V // 2]], axis=1).reshape(V)

    def vzip_hi(a, b):
        return np.stack([a[V // 2:], b[V // 2:]], axis=1).reshape(V)

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
    def vbroadcast_at(typingctx, arr, idx):
        def codegen(context, builder, sig, args):
            data = context.make_array(sig.args[0])(context, builder, args[0]).data
            one = builder.insert_element(ir.Constant(_VT, ir.Undefined), builder.load(builder.gep(data, [args[1]]), align=4),
                                         ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(one, ir.Constant(_VT, ir.Undefined),
                                          ir.Constant(ir.VectorType(ir.IntType(32), V), [0] * V))

        return f32x16(arr, idx), codegen

    @intrinsic
    def vprefetch(typingctx, arr, idx):
        def codegen(context, builder, sig, args):
            data = context.make_array(sig.args[0])(context, builder, args[0]).data
            byte_ptr = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]),
                                                "llvm.prefetch.p0i8")
            # read (0), keep in all cache levels (3: prefetcht0), data (1)
            builder.call(fn, [builder.bitcast(builder.gep(data, [args[1]]), byte_ptr),
                              ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.none(arr, idx), codegen

    def _vector_function(builder, name, nargs):  # an LLVM intrinsic on <16 x float> values
        return cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VT, [_VT] * nargs), name)

    @intrinsic
    def vfma(typingctx, a, b, c):
        def codegen(context, builder, sig, args):
            return builder.call(_vector_function(builder, "llvm.fma.v16f32", 3), args)

        return f32x16(f32x16, f32x16, f32x16), codegen

    def _binary(instr):
        @intrinsic
        def op(typingctx, a, b):
            def codegen(context, builder, sig, args):
                return getattr(builder, instr)(*args)

            return f32x16(f32x16, f32x16), codegen

        return op

    vadd, vsub, vmul, vdiv = _binary("fadd"), _binary("fsub"), _binary("fmul"), _binary("fdiv")

    @intrinsic
    def vmax(typingctx, a, b):
        def codegen(context, builder, sig, args):
            return builder.call(_vector_function(builder, "llvm.maxnum.v16f32", 2), args)

        return f32x16(f32x16, f32x16), codegen

    @intrinsic
    def vmin(typingctx, a, b):
        def codegen(context, builder, sig, args):
            return builder.call(_vector_function(builder, "llvm.minnum.v16f32", 2), args)

        return f32x16(f32x16, f32x16), codegen

    @intrinsic
    def vfloor(typingctx, a):
        def codegen(context, builder, sig, args):
            return builder.call(_vector_function(builder, "llvm.floor.v16f32", 1), args)

        return f32x16(f32x16), codegen

    @intrinsic
    def vscale2(typingctx, a, n):
        def codegen(context, builder, sig, args):
            i16, i32 = ir.IntType(16), ir.IntType(32)
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VT, [_VT, _VT, _VT, i16, i32]),
                                                "llvm.x86.avx512.mask.scalef.ps.512")
            return builder.call(fn, [args[0], args[1], ir.Constant(_VT, None), ir.Constant(i16, -1), ir.Constant(i32, 4)])

        return f32x16(f32x16, f32x16), codegen

    @intrinsic
    def vkeep_above(typingctx, a, x, t):
        def codegen(context, builder, sig, args):
            above = builder.fcmp_ordered(">", args[1], args[2])
            return builder.select(above, args[0], ir.Constant(_VT, None))

        return f32x16(f32x16, f32x16, f32x16), codegen

    @intrinsic
    def vhmax(typingctx, a):
        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.FloatType(), [_VT]),
                                                "llvm.vector.reduce.fmax.v16f32")
            return builder.call(fn, args, fastmath=("nnan",))  # a tree of vector maxima, not 15 scalar steps

        return types.float32(f32x16), codegen

    @intrinsic
    def vhsum(typingctx, a):
        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.FloatType(), [ir.FloatType(), _VT]),
                                                "llvm.vector.reduce.fadd.v16f32")
            return builder.call(fn, [ir.Constant(ir.FloatType(), -0.0), args[0]], fastmath=("reassoc",))  # a tree

        return types.float32(f32x16), codegen

    def _zip(first):
        mask = ir.Constant(ir.VectorType(ir.IntType(32), V), [first + i // 2 + (V if i % 2 else 0) for i in range(V)])

        @intrinsic
        def op(typingctx, a, b):
            def codegen(context, builder, sig, args):
                return builder.shuffle_vector(args[0], args[1], mask)

            return f32x16(f32x16, f32x16), codegen

        return op

    vzip_lo, vzip_hi = _zip(0), _zip(V // 2)
