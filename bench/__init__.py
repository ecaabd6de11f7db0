"""numbert's benchmark: `python -m bench` from the repository root; see bench/run.py."""

import os
import sys

# `python -m bench` (and `python -m bench.<section>`) puts the repository root on sys.path, where
# the top-level kernels/ folder passes for PyPI's `kernels` package, which transformers probes
# for by importing it (see .ci/run): a second, stray copy of numbert's kernels in the process.
# Nothing needs the root there once this package is imported: numbert comes from its install
# (editable or not), and bench's own modules from this package's __path__.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _ROOT]

# A benchmark may pick OpenBLAS's kernel by CPU detection rather than by a pinned core type:
# drop these for this process only, before NumPy loads OpenBLAS (results.md reports, via
# threadpoolctl, which kernel ran). Tests never do this.
for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)

# The grid runs four engines in one process, interleaved on the same cores. numbert no longer
# needs OMP_WAIT_POLICY: kernels/jit.py runs its kernels on Numba's workqueue layer, whose
# workers sleep between loops, and NumPy's OpenBLAS uses its own pthreads pool. ORT's pool is
# told not to spin in engines.py. What is left is torch's GNU OpenMP pool: libgomp reads the
# variable once, when it loads (at `import torch`, after this line), and without it its workers
# spin for a while after every parallel region, on the cores the next engine in the rotation
# needs. PASSIVE makes them sleep at once; any price is paid by torch alone (its workers are
# then woken for each parallel region). A value the user exported wins. The sections run as
# `python -m bench.<name>` subprocesses import this package too and get the same value:
# bench.gemm wants it for the same reason (it sets it itself as well); bench.attention and
# bench.coldstart run no OpenMP runtime, so it changes nothing there; bench.threadlayer's
# workers, which measure numbert next to torch as a user's process runs it, are started
# without it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# numbert.load's default backend, "auto", runs NumPy while a fresh cache compiles the kernels in the
# background (numbert.warmup): a benchmark must time the backend it names, so in the bench auto
# compiles in-process, as backend="numba" does. bench.coldstart turns it on in the runs it times.
os.environ.setdefault("NUMBERT_BACKGROUND_COMPILE", "0")
