"""The one place that decides how every numbert kernel is compiled.

- cache=True: compiled machine code is kept in __pycache__ (*.nbi / *.nbc), so only the
  first process on a machine pays the compile time.
- fastmath: lets LLVM reorder float additions (reassoc) and fuse multiply-adds (contract)
  so that row sums and dot products vectorise, and use approximate reciprocals (arcp, afn).
  Deliberately NOT "nnan" / "ninf": padded keys carry a bias of finfo(float32).min, and a
  fully padded row must still give finite, well-defined numbers.
- error_model="numpy": a division by zero gives inf/nan as NumPy does, without the Python
  exception check in every inner loop.
- parallel kernels use `prange` only over independent rows and never call BLAS inside it:
  the GEMMs run on NumPy/BLAS between kernels, so Numba's and BLAS's thread pools never
  run at the same time (see numbert.threads).

Under NUMBA_DISABLE_JIT=1 `jit`/`pjit` return the plain Python functions and `prange` is
`range`: the same code then runs as (slow) Python, which is how CI checks the kernels'
logic without the compiler.
"""

from __future__ import annotations

import os

# Numba runs `prange` loops on an OpenMP thread pool. By default an OpenMP worker keeps
# spinning on its core after each loop ends (up to 200 ms for Intel's runtime), and the
# next GEMM's BLAS threads then wait for that core: on 2 cores a MiniLM forward measured
# 1100 ms instead of 17 ms. PASSIVE puts the workers to sleep at once (a wake-up costs
# microseconds). It must be set before the pool starts, i.e. before the first parallel
# kernel runs; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402

FASTMATH = frozenset({"contract", "reassoc", "arcp", "afn", "nsz"})

_OPTIONS = dict(fastmath=set(FASTMATH), cache=True, error_model="numpy", nogil=True)

# a serial kernel (a helper called from other kernels, or work too small to split)
jit = numba.njit(**_OPTIONS)

# a kernel whose outer loop is `prange` over independent rows
pjit = numba.njit(parallel=True, **_OPTIONS)

prange = numba.prange
