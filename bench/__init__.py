"""numbert's benchmark: `python -m bench` from the repository root; see bench/run.py."""

import os

# A benchmark may pick OpenBLAS's kernel by CPU detection rather than by a pinned core type:
# drop these for this process only, before NumPy loads OpenBLAS (results.md reports, via
# threadpoolctl, which kernel ran). Tests never do this.
for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)

# Four engines share one process and its cores: an OpenMP pool that keeps spinning after its
# work (torch's, Numba's) would steal the cores of whichever engine runs next. Every OpenMP
# runtime in the process sleeps when idle instead (see kernels/jit.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
