"""Cold start: a fresh install answers at once on NumPy while the kernels compile in another process.

Numba compiles a kernel the first time it is called (about 10 CPU seconds for all of numbert's)
and keeps the machine code in its cache (numbert.kernels.jit: cache=True), so only the first
process on a machine pays. `backend="auto"`, numbert.load's default, does not make that process
wait for the compiler:

- the cache is warm (the marker that the last complete warm-up wrote is there and its key
  matches this process): the model runs the Numba kernels, loaded from the cache.
- else the model runs the NumPy reference (numbert.layers: the same numbers within 1e-5; as
  fast on a few short texts, slower on big batches), and ONE detached, low-priority process,
  `numbert.warmup`, compiles every kernel a forward pass can call (every family, every head,
  attentions on and off, padding, MPNet's position bias: see compile_all) into the same cache,
  then writes the marker. A model that started on NumPy switches to the kernels at the start of
  a call once the marker is there (checked at most every POLL_S seconds: one stat), so a
  notebook or a long corpus job does not stay on NumPy. Meanwhile its NumPy forward passes run
  BLAS on one core fewer, which the compile gets (leave_a_core).

Why a process and not a thread: Numba compiles holding the GIL, so a thread would stall the very
forward pass it is meant to hide, and a daemon thread killed inside LLVM at exit can crash the
interpreter. The warm-up runs in a new session (Ctrl-C in the terminal does not reach it), at
nice +NICE, with stdin from /dev/null and stdout/stderr into LOG_FILE in the cache folder: the
command that started it exits at once, never waits for it, never shows its output, and a pipe
it was started from (`numbert classify ... | head`, subprocess.run(capture_output=True)) closes
when the command ends.

One warm-up at a time per cache folder: the warm-up holds an exclusive flock on LOCK_FILE (its
pid written inside, for `numbert info`) for as long as it lives. The operating system drops the
lock when the process ends, however it ends, so a lock file left by a dead warm-up is simply
taken over; a process that finds the lock held waits for that warm-up's marker instead of
starting another. A warm-up that fails leaves no marker: its process stays on NumPy, with no
error (LOG_FILE says why), and the next process tries again.

The marker (MARKER_FILE) is trusted only when its key equals this process's (cache_key): the
Numba and Python versions, the target and CPU (name and features) Numba compiles for, as its
cache index keys on them, and the kernel sources (content, size and mtime of kernels/*.py,
Numba's own staleness test) with this module's. A stale marker is ignored: a new warm-up runs.

Where none of this applies, auto means numba, compiled in-process as backend="numba" does:
NUMBERT_BACKGROUND_COMPILE=0 (ENV_VAR), no cache (kernels.jit.CACHE is False: a warm-up would
be lost), NUMBA_DISABLE_JIT=1 (nothing to compile), no flock (not a POSIX system).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ENV_VAR = "NUMBERT_BACKGROUND_COMPILE"
MARKER_FILE = "numbert-warm.json"
LOCK_FILE = "numbert-warmup.lock"
LOG_FILE = "numbert-warmup.log"
POLL_S = 0.25  # a model on NumPy looks for the marker at most this often
NICE = 10  # the warm-up's priority: below the process that waits on nothing but its own forward
LOG_LIMIT = 64 * 1024  # the log is started afresh past this size

# what this process knows; one state for every model in it
INLINE, WARM, COMPILING, FAILED = "inline", "warm", "compiling", "failed"


def background_enabled() -> bool:
    """NUMBERT_BACKGROUND_COMPILE unset, or anything but 0/false/no/off."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_folder() -> str | None:
    """The folder Numba caches numbert's kernels in (as kernels.jit chose it), None when it cannot cache."""
    from .kernels import jit

    if not jit.CACHE:
        return None
    from numba.core.caching import FunctionCache

    try:  # Numba's own search (NUMBA_CACHE_DIR, __pycache__ beside the kernels, ~/.cache/numba, the fallback)
        return str(FunctionCache(jit._probe)._cache_path)  # every kernel file sits beside jit.py
    except (RuntimeError, AttributeError):
        return None


def cache_key() -> dict:
    """What cached machine code depends on: a marker with another key says nothing about this process."""
    import numba
    from numba.core.registry import cpu_target

    from . import kernels

    sources = hashlib.sha256()
    for path in [*sorted(Path(kernels.__file__).parent.glob("*.py")), Path(__file__)]:
        st = path.stat()
        sources.update(f"{path.name}\0{st.st_size}\0{st.st_mtime}\0".encode())
        sources.update(hashlib.sha256(path.read_bytes()).digest())
    triple, cpu, features = cpu_target.target_context.codegen().magic_tuple()
    return {"numba": numba.__version__, "python": sys.version, "target": triple, "cpu": cpu,
            "cpu_features": hashlib.sha256(features.encode()).hexdigest()[:16], "sources": sources.hexdigest()}


def read_marker(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, MARKER_FILE), encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _lock_held(folder: str) -> bool:
    """Is a warm-up running for this folder (someone holds the flock on LOCK_FILE)?"""
    import fcntl

    try:
        fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDONLY)
    except OSError:
        return False  # no lock file: nobody ever started one here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock taken to ask


class _Detached(subprocess.Popen):
    """The warm-up's Popen: outliving this object is its purpose, so no ResourceWarning about it."""

    def __del__(self):
        if self.returncode is None:
            try:
                self.poll()  # reap it if it has ended
            except OSError:
                pass


class _State:
    """The warm-up as this process sees it: decided once, then polled by the models waiting on it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.status: str | None = None  # INLINE, WARM, COMPILING, FAILED
        self.folder: str | None = None
        self.key: dict | None = None
        self.proc: subprocess.Popen | None = None  # the warm-up this process started, if it did
        self.spawned = False
        self.next_check = 0.0
        self.marker_seen = None  # (mtime_ns, size) of the marker last read

    def decide(self) -> str:
        if not background_enabled() or not sys.executable:  # no interpreter to start (embedded Python)
            return INLINE
        import numba

        if numba.config.DISABLE_JIT:
            return INLINE
        try:
            import fcntl  # noqa: F401  POSIX only
        except ImportError:
            return INLINE
        self.folder = cache_folder()
        if self.folder is None:
            return INLINE
        self.key = cache_key()
        if self.marker_valid():
            return WARM
        return self.spawn()

    def marker_valid(self) -> bool:
        try:
            st = os.stat(os.path.join(self.folder, MARKER_FILE))
        except OSError:
            return False
        seen = (st.st_mtime_ns, st.st_size)
        if seen == self.marker_seen:
            return False  # read already, and it did not match
        self.marker_seen = seen
        marker = read_marker(self.folder)
        return marker is not None and marker.get("key") == self.key

    def spawn(self) -> str:
        """Start the warm-up unless one is running; COMPILING, or WARM if one finished meanwhile."""
        import fcntl

        try:
            fd = os.open(os.path.join(self.folder, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            self.spawned = True
            return FAILED
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                # another process's warm-up is running (or, for an instant, a process asking
                # _lock_held): wait for its marker; poll() starts one if the lock frees without it
                return COMPILING
            self.marker_seen = None
            if self.marker_valid():  # it finished between our look and the lock
                return WARM
            # one thread for everything: the compiled code does not depend on the thread count,
            # and the tiny forwards it runs gain nothing from more, on cores the user's job needs
            env = {**os.environ, ENV_VAR: "0", "NUMBERT_WARMUP_SYS_PATH": json.dumps(sys.path),
                   "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1"}
            env.pop("NUMBERT_NUM_THREADS", None)
            self.spawned = True  # one try per process
            log = subprocess.DEVNULL
            try:
                log = _open_log(self.folder)
                # the child imports numbert from this process's sys.path, not from its working folder
                code = ("import json, os, sys; sys.path[:] = json.loads(os.environ.pop('NUMBERT_WARMUP_SYS_PATH')); "
                        "from numbert.warmup import main; sys.exit(main())")
                self.proc = _Detached([sys.executable, "-c", code, "--lock-fd", str(fd), "--folder", self.folder,
                                       "--nice", str(NICE)],
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(fd,),
                                      start_new_session=True, cwd=self.folder, env=env)
            except (OSError, ValueError, subprocess.SubprocessError):
                return FAILED
            finally:
                if log is not subprocess.DEVNULL:
                    log.close()
            return COMPILING
        finally:
            os.close(fd)  # the child holds the lock now (its copy of the descriptor), or nobody does

    def poll(self) -> str:
        """Called with self.lock held while COMPILING: has the warm-up finished?"""
        if self.marker_valid():
            if self.proc is not None:
                self.proc.poll()
            return WARM
        if self.proc is not None:
            if self.proc.poll() is None:
                return COMPILING
            self.marker_seen = None
            return WARM if self.marker_valid() else FAILED  # ended without a marker: stay on NumPy
        if _lock_held(self.folder):
            return COMPILING  # another process's warm-up, still running
        self.marker_seen = None
        if self.marker_valid():
            return WARM
        return FAILED if self.spawned else self.spawn()  # theirs ended without a marker: one try of our own


_STATE = _State()


def _after_fork_in_child():
    # a forked child (a multiprocessing worker) cannot wait on its parent's warm-up process: it
    # watches the lock and the marker instead; and a lock another thread held at the fork is new
    global _SHARE_LOCK, _share_users, _share_limit
    _STATE.proc = None
    _STATE.lock = threading.Lock()
    _SHARE_LOCK, _share_users, _share_limit = threading.Lock(), 0, None


os.register_at_fork(after_in_child=_after_fork_in_child)


def start() -> bool:
    """backend="auto" at load: True, run the kernels now; False, run NumPy while they compile (see ready)."""
    s = _STATE
    with s.lock:
        if s.status is None:
            try:
                s.status = s.decide()
            except Exception:  # noqa: BLE001  anything unforeseen: the kernels, compiled here, as backend="numba"
                s.status = INLINE
            s.next_check = time.monotonic() + POLL_S
        return s.status in (INLINE, WARM)


def ready() -> bool:
    """Cheap, for every call of a model that started on NumPy: have the kernels become available?"""
    s = _STATE
    status = s.status
    if status in (INLINE, WARM):
        return True
    if status != COMPILING:
        return False
    now = time.monotonic()
    if now < s.next_check:
        return False
    with s.lock:
        if s.status == COMPILING:
            s.next_check = now + POLL_S
            try:
                s.status = s.poll()
            except Exception:  # noqa: BLE001  a model must never fail for its warm-up: stay on NumPy
                s.status = FAILED
        return s.status == WARM


# One core for the warm-up. OpenBLAS's threads spin while they wait for each other: with the
# warm-up busy on one of the cores they want, a short forward on NumPy took 1 s instead of 0.1
# (README main job, 2 cores). So while a model runs NumPy because the kernels are compiling, its
# forward passes leave one core to the warm-up: BLAS on one thread fewer (never below 1), put back
# when the last such call in the process returns (counted: calls from several threads nest).
_SHARE_LOCK = threading.Lock()
_share_users = 0
_share_limit = None
_blas = None  # threadpoolctl's controller of the BLAS libraries, made once (4 ms)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _limit_blas():
    global _blas
    from threadpoolctl import ThreadpoolController

    if _blas is None:
        _blas = ThreadpoolController().select(user_api="blas")
    cores = _cores()
    threads = max((lib.num_threads for lib in _blas.lib_controllers), default=1)
    if cores < 2 or threads < cores:  # one core, or a core already left free (threads=)
        return None
    return _blas.limit(limits=cores - 1)


@contextlib.contextmanager
def leave_a_core():
    """Around a NumPy forward pass that runs because the kernels are compiling in the background."""
    global _share_users, _share_limit
    with _SHARE_LOCK:
        if _share_users == 0:
            try:
                _share_limit = _limit_blas()
            except Exception:  # noqa: BLE001  no threadpoolctl answer: run as is
                _share_limit = None
        _share_users += 1
    try:
        yield
    finally:
        with _SHARE_LOCK:
            _share_users -= 1
            if _share_users == 0 and _share_limit is not None:
                _share_limit.restore_original_limits()
                _share_limit = None


def status() -> dict:
    """For `numbert info` and the bench: the kernel cache's state, without starting anything."""
    s = _STATE
    out = {"background_compile": background_enabled(), "this_process": s.status}
    try:
        folder = cache_folder()
    except Exception as e:  # numba missing or broken: info still answers  # noqa: BLE001
        return {**out, "cache_folder": None, "state": f"numba unavailable ({type(e).__name__}: {e})"}
    out["cache_folder"] = folder
    if folder is None:
        return {**out, "state": "no cache: the kernels compile in each process"}
    marker = read_marker(folder)
    if marker is not None and marker.get("key") == cache_key():
        return {**out, "state": "warm", "compiled_in_s": marker.get("wall_s"), "compile_cpu_s": marker.get("cpu_s")}
    if _lock_held(folder):
        return {**out, "state": "compiling", "pid": _lock_pid(folder)}
    return {**out, "state": "cold" if marker is None else "stale (compiled for another version, CPU or source)"}


def _lock_pid(folder: str) -> int | None:
    try:
        return int(Path(folder, LOCK_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _open_log(folder: str):
    path = os.path.join(folder, LOG_FILE)
    try:
        if os.path.getsize(path) > LOG_LIMIT:
            os.remove(path)
    except OSError:
        pass
    return open(path, "ab")


# ----------------------------------------------------------------------------- the warm-up process

# The geometries compiled: head sizes 32 (MiniLM) and 64 (BERT-base), short and long rows. Numba
# compiles per argument TYPE (dtype, ndim, layout), not per shape; the shapes are here for any
# kernel wrapper that picks a different kernel by size.
GEOMETRIES = ((2, 32, (1, 6, 37)), (2, 64, (9, 70, 130, 300)))  # (heads, head size, sequence lengths)
ACTIVATIONS = ("gelu", "gelu_new", "relu")


def _families():
    from .families import _registry

    seen = []
    for family in _registry().values():
        if family not in seen:
            seen.append(family)
    return seen


def _tiny_config(family, nh: int, hs: int, act: str, max_t: int):
    from .config import BertConfig

    H = nh * hs
    d = dict(vocab_size=50, hidden_size=H, num_hidden_layers=1, num_attention_heads=nh, intermediate_size=2 * H,
             hidden_act=act, max_position_embeddings=max_t + 2, type_vocab_size=2, num_labels=3)
    if family.name == "electra":
        d["embedding_size"] = H // 2  # embeddings_project runs
    d = {**family.config(d), "model_type": family.name}
    names = {f.name for f in dataclasses.fields(BertConfig)}
    return BertConfig(**{k: v for k, v in d.items() if k in names})


def compile_all(log=lambda msg: None) -> int:
    """Run a tiny model of every family, with every head, through the Numba backend: every kernel a
    forward pass calls is compiled (and cached) for the argument types real models pass. Returns
    the number of forward passes run."""
    import numpy as np

    from .heads import FAMILY_MLM_HEADS, HEADS
    from .model import Model
    from .weights import build

    rng = np.random.default_rng(0)

    def take(key, shape):  # small random weights: the values do not matter, the types do
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    heads = [*HEADS.values(), *FAMILY_MLM_HEADS]
    from .kernels import jit

    default = jit.SERIAL_BELOW
    runs = 0
    try:
        for family in _families():
            for i, (nh, hs, lengths) in enumerate(GEOMETRIES):
                for act in (ACTIVATIONS if i == 0 else ACTIVATIONS[:1]):
                    config = _tiny_config(family, nh, hs, act, max(lengths))
                    weights = build(family.weights, config, take)  # every optional module present: pooler, classifier
                    model = Model(config, weights, None, backend="numba")
                    mine = [(head, build(head.tree, config, take)) for head in heads
                            if head.families is None or family.name in head.families]
                    for T, B in ((T, B) for T in lengths for B in (1, 2)):
                        ids = rng.integers(3, config.vocab_size, size=(B, T))  # [B, T] int64
                        mask = np.ones((B, T), dtype=np.int64)
                        mask[B - 1, max(1, T // 2):] = 0  # the last row padded (B = 1: one padded row)
                        types = np.zeros((B, T), dtype=np.int64)
                        for want, serial_below in ((False, default), (True, default), (False, 0), (True, 0)):
                            # small work runs each kernel's serial twin; SERIAL_BELOW = 0 launches the
                            # parallel kernels as large inputs do: both compiled (kernels/jit.py)
                            jit.SERIAL_BELOW = serial_below
                            out = model(ids, mask, types, output_hidden_states=want, output_attentions=want)
                            runs += 1
                            for head, head_weights in mine:  # token classification, QA, the family's masked LM
                                head.apply(head_weights, out, model, model.ops)
                    log(f"{family.name} hs={hs} {act}: ok")
    finally:
        jit.SERIAL_BELOW = default
    return runs


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="numbert.warmup", description="compile numbert's kernels into Numba's cache")
    p.add_argument("--lock-fd", type=int, required=True, help="the flocked LOCK_FILE, held until this process ends")
    p.add_argument("--folder", required=True, help="the cache folder the parent process found")
    p.add_argument("--nice", type=int, default=NICE, help="added to this process's niceness")
    args = p.parse_args(argv)
    wall0, cpu0 = time.monotonic(), time.process_time()
    try:
        os.nice(args.nice)
    except OSError:
        pass

    def log(msg):
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} numbert.warmup[{os.getpid()}] {msg}", flush=True)

    try:
        os.ftruncate(args.lock_fd, 0)
        os.pwrite(args.lock_fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
    log(f"started: {sys.executable}, cache {args.folder}")
    folder = cache_folder()
    if folder != args.folder:
        log(f"failed: this process caches in {folder}, not in {args.folder}; nothing compiled")
        return 2
    key = cache_key()
    runs = compile_all(log)
    marker = {"key": key, "pid": os.getpid(), "forwards": runs, "wall_s": round(time.monotonic() - wall0, 3),
              "cpu_s": round(time.process_time() - cpu0, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = os.path.join(folder, f".{MARKER_FILE}.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(marker, f, indent=1)
    os.replace(tmp, os.path.join(folder, MARKER_FILE))  # whole or not at all
    log(f"done: {runs} forward passes, {marker['wall_s']} s wall, {marker['cpu_s']} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
