"""How many threads numbert computes with: one number for Numba and for BLAS alike.

`numbert.load(..., threads=N)` or the environment variable NUMBERT_NUM_THREADS set both
Numba's thread count (its parallel kernels) and the BLAS library's (NumPy's matmul), via
threadpoolctl. The kernels never call BLAS inside a parallel loop, so the two pools never
run at the same time and N threads means N busy cores, not N x N. (numbert's own large GEMMs
run N single-threaded BLAS calls side by side, one per part of the weight: kernels/linear.py.)
The count holds for calls from every Python thread: Numba's own setting is per thread, so
numbert.kernels.jit applies it at each parallel kernel launch.
"""

from __future__ import annotations

import os

from .errors import positive_int

ENV_VAR = "NUMBERT_NUM_THREADS"

_blas_limiter = None  # keeps the threadpoolctl limit alive for the life of the process


def resolve_threads(threads=None) -> int | None:
    """The requested thread count: the argument, else NUMBERT_NUM_THREADS, else None (leave as is)."""
    if threads is None:
        env = os.environ.get(ENV_VAR)
        if env is None or env.strip() == "":
            return None
        try:
            threads = int(env)
        except ValueError:
            raise ValueError(f"{ENV_VAR}={env!r} is not an integer") from None
        positive_int(threads, ENV_VAR)
    positive_int(threads, "threads")
    return min(threads, os.cpu_count() or threads)


def set_threads(threads=None) -> int | None:
    """Apply a thread count to Numba and BLAS; returns the count applied (None: unchanged)."""
    global _blas_limiter
    n = resolve_threads(threads)
    if n is None:
        return None
    import numba
    from threadpoolctl import threadpool_limits

    # Numba's pool starts here: numbert's threading layer must be chosen first. jit keeps the
    # count for launches from every Python thread (Numba's own setting is per thread).
    from .kernels import jit

    jit.select_threading_layer()
    jit.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    _blas_limiter = threadpool_limits(limits=n, user_api="blas")
    return n
