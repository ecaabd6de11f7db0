"""The one place that decides how every numbert kernel is compiled, and on which threads it runs.

- cache=True: compiled machine code is kept in __pycache__ (*.nbi / *.nbc), so only the
  first process on a machine pays the compile time. Numba looks for a writable place in
  order: NUMBA_CACHE_DIR, the package's __pycache__, ~/.cache/numba; when none is writable
  (a read-only install run by a user whose home is read-only too) it would raise "cannot
  cache function ...: no locator available" at import. numbert then caches in a private
  per-user temp folder (CACHE_FALLBACK_DIR: created 0700, used only if this user owns it), and
  when even that fails, compiles without a cache (CACHE = False) rather than fail.
- fastmath: lets LLVM reorder float additions (reassoc) and fuse multiply-adds (contract)
  so that row sums and dot products vectorise, and use approximate reciprocals (arcp, afn).
  Deliberately NOT "nnan" / "ninf": padded keys carry a bias of finfo(float32).min, and a
  fully padded row must still give finite, well-defined numbers.
- error_model="numpy": a division by zero gives inf/nan as NumPy does, without the Python
  exception check in every inner loop.
- parallel kernels use `prange` only over independent rows (or parts of a weight) and never
  call BLAS inside it: the large GEMMs run on NumPy/BLAS between kernels (single-threaded
  BLAS calls side by side, kernels/linear.py), never at the same time as a Numba loop.
- each parallel kernel has a serial twin (pjit), which runs on the calling thread when the
  caller says the work is small (SERIAL_BELOW): waking the pool costs ~150 us.

The threading layer: `tbb` where the TBB library is installed, else Numba's `workqueue`
--------------------------------------------------------------------------------------
A `prange` loop runs on one of three Numba threading layers. numbert needs one that is
(1) fast whatever the process imported before (torch, threads=), (2) safe to call from many
Python threads at once, (3) safe across `fork`, and (4) needs nothing the user must export or
install. What Numba's docs (user/threading-layer) and source (numba/np/ufunc/parallel.py) say,
and what we measured (2-core AMD EPYC Zen 4, 2 threads, fp32, MiniLM = all-MiniLM-L6-v2,
medians; each layer in its own process, see `python -m bench.threadlayer`):

- `omp` (GNU OpenMP, Numba's default on Linux without TBB): thread-safe, but NOT fork-safe
  (libgomp; a forked child prints "Terminating: fork() called from a process already using
  GNU OpenMP" and a `fork` Pool hangs). Its workers spin after each loop unless
  OMP_WAIT_POLICY=PASSIVE was in the environment when the runtime loaded; torch loads its own
  libgomp.so.1 globally at `import torch`, and Numba's omppool binds to that already
  initialised runtime, so no setting made after `import torch` can reach it. Measured
  (quiet moment, 15 calls each, 2 processes per cell): MiniLM 1x128 28-31 ms clean, 263-268 ms
  with torch imported first (8.6x). On the loaded shared machine (bench.threadlayer, 5 rounds)
  torch first / threads=2 cost 1.1-6.4x / 1.3-7.6x the clean process across BERT-base-shaped
  (2 layers) and MiniLM, 1x128 and 8x128.
- `tbb`: thread- and fork-safe, no spinning problem (MiniLM 1x128 clean 30-44 ms, torch first
  25-32 ms; bench.threadlayer: torch first / threads=2 at 0.7-1.0x / 0.8-1.1x of clean), but a
  new run-time dependency (the `tbb` wheel, ~20 MB of shared libraries) that would also change
  the default layer of every other Numba user in the environment.
- `workqueue`: Numba's own pool, always present, fork-safe (Numba re-creates it in a forked
  child), workers sleep on a condition variable between loops: nothing spins, so nothing
  starves BLAS and nothing depends on what loaded first. MiniLM 1x128 30-34 ms clean, 31-35 ms
  with torch imported first (quiet moment, as above), i.e. as fast as omp at its best; on the
  loaded machine no condition was consistently slower than clean (ratios 0.2-2x moved with
  the load from round to round, in both directions). Its one limit: it is NOT thread-safe;
  two launches at once from two Python threads abort the process ("Terminating: Nested
  parallel kernel launch detected"). Hence `_LAUNCH_LOCK`: every parallel kernel launch takes
  one process-wide lock (re-created in a forked child with os.register_at_fork, in case the
  fork happened while another thread held it). Each kernel already uses all cores, so
  serialising the (short) parallel loops costs no throughput; the GEMMs between them, which
  dominate, still run concurrently in BLAS. Outputs are bit-identical to the omp layer's
  (each row is computed by one thread either way).

What a launch costs: waking the pool. workqueue's workers sleep on a condition variable, and
on a virtual machine a sleeping thread takes a while to run again: a parallel loop of no work
took 107-241 us per launch on workqueue, 2.5 us on tbb (whose workers wait a moment before
they sleep), 26-60 us on omp with OMP_WAIT_POLICY=PASSIVE (2-core Intel Xeon, Emerald Rapids,
KVM guest). A forward pass makes about four launches per layer, each waited for: BERT-base
1x16 took 29.5 / 28.7 ms on workqueue and 22.0 / 22.2 ms on tbb (two rounds of fresh
processes, medians of 9), 1x128 110-121 / 98-118 ms, 8x128 677-700 / 651-679 ms (the
parallel loops are a small part of it there); MiniLM embed over the bench corpus 484-485 /
496-508 sentences/s. TBB's short wait did not slow the BLAS calls between the loops.

So numbert selects `tbb` when Numba can load it (the `tbb` wheel: `pip install numbert[tbb]`,
~30 MB; Numba needs TBB 2021.6 or later), and `workqueue` otherwise, which needs nothing
installed. Both are fork- and thread-safe as numbert uses them: `_LAUNCH_LOCK` (below) is
taken on either layer. The choice is made here, at import, before any parallel kernel is
compiled or launched (numba.config.THREADING_LAYER is read when Numba starts its pool, so this
works when the user imported Numba first). numbert.threads imports this module before it calls
numba.set_num_threads (which starts the pool). Two cases where numbert keeps Numba's choice:
the user chose a layer explicitly (NUMBA_THREADING_LAYER or numba.config.THREADING_LAYER),
or the pool was already started by other parallel Numba code in the process (the layer is
then fixed for the process). The bench measures it: `python -m bench.threadlayer`.

Under NUMBA_DISABLE_JIT=1 `jit`/`pjit` return the plain Python functions and `prange` is
`range`: the same code then runs as (slow) Python, which is how CI checks the kernels'
logic without the compiler.
"""

from __future__ import annotations

import functools
import os
import stat
import tempfile
import threading
import types

import numba
from numba.core.caching import FunctionCache

def _tbb_loads() -> bool:
    # What Numba itself checks before it starts a tbb pool (numba/np/ufunc/parallel.py): the
    # library's version, then its own extension module linked against it. Nothing starts here.
    try:
        import warnings

        from numba.np.ufunc.parallel import _check_tbb_version_compatible

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an old TBB: Numba warns and we take workqueue
            _check_tbb_version_compatible()
        from numba.np.ufunc import tbbpool  # noqa: F401

        return True
    except Exception:  # no TBB, an old one, or a Numba whose private check moved
        return False


THREADING_LAYER = "tbb" if _tbb_loads() else "workqueue"


def _numba_pool_started() -> bool:
    from numba.np.ufunc import parallel

    return bool(getattr(parallel, "_is_initialized", False))


def select_threading_layer() -> str:
    """Make Numba start its pool on THREADING_LAYER, unless a choice was made already.

    Returns the layer Numba will run (or runs): ours, the user's explicit one, or, when the
    pool started before numbert was imported, the one it started with."""
    if _numba_pool_started():
        return numba.threading_layer()
    if str(numba.config.THREADING_LAYER).lower() != "default":  # NUMBA_THREADING_LAYER or set in code
        return numba.config.THREADING_LAYER
    numba.config.THREADING_LAYER = THREADING_LAYER
    return THREADING_LAYER


def _start_tbb_on_the_main_thread(layer: str) -> None:
    # Numba's tbb pool is fork-safe only for a fork from the thread that started it (its
    # pthread_atfork handler stops TBB's workers there; from any other thread it prints "Attempted
    # to fork from a non-main thread, the TBB library may be in an invalid state in the child").
    # The pool starts at the first parallel launch, which may come from a worker thread (a server
    # that first calls the model from its request threads, then forks a pool). So it starts here,
    # at import, when that is the main thread. numba.get_num_threads starts the pool.
    if layer == "tbb" and not _numba_pool_started() and threading.current_thread() is threading.main_thread():
        numba.get_num_threads()


_start_tbb_on_the_main_thread(select_threading_layer())

# One launch at a time (workqueue is not thread-safe, see above). A plain Lock: kernels never
# call other parallel kernels, and a thread waiting here releases the GIL.
_LAUNCH_LOCK = threading.Lock()


def _new_lock_in_child():
    global _LAUNCH_LOCK
    _LAUNCH_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


# Numba keeps its thread count per Python thread (numba.set_num_threads in one thread leaves
# the others at NUMBA_NUM_THREADS), so a count chosen once (numbert.load(threads=N)) is
# applied by each launch, in whichever thread makes it. None: leave Numba's count alone.
NUM_THREADS: int | None = None


def set_num_threads(n: int | None) -> None:
    """The Numba thread count of every parallel kernel launch from now on, in every thread."""
    global NUM_THREADS
    if n is not None:
        numba.set_num_threads(n)  # validates n, and starts the pool (after select_threading_layer)
    NUM_THREADS = n


# Below this much work (about a float32 element, or a multiply-add, each) a kernel runs on the
# calling thread: waking Numba's workers costs more than they would save. Measured (2-core AMD
# EPYC Zen 4, 2 threads): add + LayerNorm of 16 x 768 rows, 160 us launched on the pool against
# 8 us on the calling thread; 256 rows 219 against 125; 1024 rows 238 against 376.
SERIAL_BELOW = 1 << 18


class ParallelKernel:
    """A parallel Numba kernel called from Python; each call holds the launch lock and runs
    on NUM_THREADS threads, unless the caller says its work is small (`work=`, below
    SERIAL_BELOW): then its serial twin runs on the calling thread, with no lock.

    Attribute access goes to the Numba dispatcher (py_func, signatures, ...). A parallel
    kernel is an entry point: call it from Python, not from another jitted function."""

    def __init__(self, dispatcher, serial):
        self.dispatcher = dispatcher
        self.serial = serial  # the same code compiled without parallel=True: prange runs as range
        functools.update_wrapper(self, getattr(dispatcher, "py_func", dispatcher))

    def __call__(self, *args, work=None):
        if work is not None and work < SERIAL_BELOW:
            return self.serial(*args)
        with _LAUNCH_LOCK:
            n = NUM_THREADS
            if n is not None and numba.get_num_threads() != n:
                numba.set_num_threads(n)
            return self.dispatcher(*args)

    def __getattr__(self, name):  # only for names not found on the wrapper itself
        if name == "dispatcher":  # not set yet (e.g. during copy): no recursion
            raise AttributeError(name)
        return getattr(self.dispatcher, name)


def _probe():  # a function in this folder: can Numba cache the kernels beside it?
    pass


def _numba_can_cache() -> bool:
    try:
        FunctionCache(_probe)  # runs Numba's own search for a writable cache folder
    except RuntimeError:  # "no locator available"
        return False
    return True


def _private_dir(path: str) -> bool:
    """`path` exists or was made, is a folder owned by this user, writable by nobody else."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    # cached machine code is loaded and run: a folder someone else could write to is no cache
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022
            and os.access(path, os.W_OK))


def _choose_cache() -> tuple[bool, str | None]:
    if _numba_can_cache():
        return True, None
    fallback = os.path.join(tempfile.gettempdir(), f"numbert-numba-cache-{os.getuid()}")
    if _private_dir(fallback):
        before, numba.config.CACHE_DIR = numba.config.CACHE_DIR, fallback  # as if NUMBA_CACHE_DIR said it
        if _numba_can_cache():
            return True, fallback
        numba.config.CACHE_DIR = before
    return False, None


CACHE, CACHE_FALLBACK_DIR = _choose_cache()

FASTMATH = frozenset({"contract", "reassoc", "arcp", "afn", "nsz"})

_OPTIONS = dict(fastmath=set(FASTMATH), cache=CACHE, error_model="numpy", nogil=True)

# a serial kernel (a helper called from other kernels, or work too small to split)
jit = numba.njit(**_OPTIONS)

_pjit = numba.njit(parallel=True, **_OPTIONS)


def pjit(func):
    """A kernel whose outer loop is `prange` over independent rows (called from Python), with
    its serial twin for small work (ParallelKernel)."""
    return ParallelKernel(_pjit(func), jit(_renamed(func, "_serial")))


def _renamed(func, suffix):
    # The same code under another name: Numba names a cached function's files after its
    # qualified name and does not key them on the compile options, so the serial twin of a
    # parallel kernel must not share its name (it would load the other's machine code).
    twin = types.FunctionType(func.__code__, func.__globals__, func.__name__ + suffix, func.__defaults__,
                              func.__closure__)
    twin.__qualname__ = func.__qualname__ + suffix
    twin.__module__ = func.__module__
    twin.__doc__ = func.__doc__
    return twin


prange = numba.prange


def launch_threads() -> int:
    """The threads the next parallel kernel launch from this thread runs on: a kernel may cut
    its work in that many parts (kernels.linear gives each thread its own columns of the
    weight). Passed in as an argument: numba.get_num_threads() inside a kernel would keep it
    out of the cache."""
    return NUM_THREADS if NUM_THREADS is not None else numba.get_num_threads()
