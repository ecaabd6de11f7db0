"""Cold start (numbert.warmup): backend="auto" on an empty Numba cache runs NumPy, starts ONE
detached background compile, and moves to the kernels when it has finished; a warm cache runs the
kernels at once and compiles nothing; stale markers, dead locks, concurrent cold starts and
NUMBERT_BACKGROUND_COMPILE=0.

Every scenario runs in subprocesses with its own NUMBA_CACHE_DIR (conftest turns the background
compile off for the rest of the suite; here it is on). One background compile (about 10-20 CPU s)
fills the cache that the module shares; the other scenarios copy it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from numbert import warmup

pytestmark = pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="nothing compiles without the JIT")

WAIT_S = 300  # a background compile on a loaded 2-core machine: ~20 s; generous
TOL = 1e-5

# A long-running process started cold: the first call on NumPy, then calls until the model has
# moved to the kernels, then one more; the outputs and what ran are printed as JSON.
LONG_RUNNING = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import numbert
    from numbert import warmup
    folder, out = sys.argv[1], sys.argv[2]
    t = time.perf_counter()
    model = numbert.load(folder)
    batch = model.tokenize(["I love cats!", "Beautiful is better than ugly, explicit better than implicit."])
    first_backend, first_repr = model.backend, repr(model)
    first = model(**batch, output_attentions=True)
    first_s = time.perf_counter() - t
    while model.backend != "numba" and time.perf_counter() - t < {wait}:
        model(**batch)
        time.sleep(0.1)
    switched_s = time.perf_counter() - t
    after_backend = model.backend
    after = model(**batch, output_attentions=True)
    np.savez(out, first=first.last_hidden_state, after=after.last_hidden_state, mask=batch.attention_mask,
             first_attn=first.attentions[-1], after_attn=after.attentions[-1])
    print(json.dumps({{"first_backend": first_backend, "first_repr": first_repr, "first_s": first_s,
                      "requested": model.requested_backend, "after_backend": after_backend,
                      "switched_s": switched_s, "status": warmup._STATE.status,
                      "warmer_pid": warmup._STATE.proc.pid if warmup._STATE.proc else None}}))
""").format(wait=WAIT_S)

# A fresh process that loads and runs a model once, reporting what ran and what Numba compiled.
ONE_SHOT = textwrap.dedent("""
    import json, sys
    from numba.core import event
    compiled = []
    class Compiles(event.Listener):
        def on_start(self, ev):
            pass
        def on_end(self, ev):
            compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    event.register("numba:compile", Compiles())
    import numbert
    from numbert import warmup
    backends = []
    for folder in sys.argv[1:]:
        model = numbert.load(folder)
        batch = model.tokenize(["I love cats!", "Beautiful is better than ugly, explicit better than implicit."])
        model(**batch)
        model(**batch, output_attentions=True, output_hidden_states=True)
        backends.append(model.backend)
    print(json.dumps({"backends": backends, "compiled": compiled, "status": warmup._STATE.status,
                      "spawned": warmup._STATE.proc is not None}))
""")


def env_for(cache: Path, background: str = "1") -> dict:
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache), "NUMBERT_BACKGROUND_COMPILE": background,
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_py(code: str, *args, cache: Path, background: str = "1", timeout=WAIT_S + 60) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env_for(cache, background),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def cache_folder(cache: Path) -> Path:
    """The kernels' folder under a NUMBA_CACHE_DIR (Numba names it after the source folder)."""
    folders = [p.parent for p in cache.rglob(warmup.LOCK_FILE)]
    assert len(folders) == 1, f"expected one kernels cache folder under {cache}, found {folders}"
    return folders[0]


def starts(folder: Path) -> int:
    """How many warm-up processes have started on this folder (each logs one 'started' line)."""
    log = folder / warmup.LOG_FILE
    return log.read_text().count("] started:") if log.exists() else 0


def lock_held(folder: Path) -> bool:
    return warmup._lock_held(str(folder))


def wait_warmup_done(folder: Path):
    deadline = time.monotonic() + WAIT_S
    while lock_held(folder):
        assert time.monotonic() < deadline, f"the warm-up in {folder} did not finish in {WAIT_S} s"
        time.sleep(0.2)


def marker_key_now(cache: Path) -> dict:
    code = "import json; from numbert import warmup; print(json.dumps(warmup.cache_key()))"
    r = subprocess.run([sys.executable, "-c", code], env=env_for(cache), capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def cold_start(tmp_path_factory, checkpoint_factory):
    """A process started on an empty cache that keeps calling its model until it runs the kernels."""
    cache = tmp_path_factory.mktemp("numba-cache")
    folder = checkpoint_factory()
    out = tmp_path_factory.mktemp("out") / "outputs.npz"
    info = run_py(LONG_RUNNING, folder, out, cache=cache)
    kernels = cache_folder(cache)
    wait_warmup_done(kernels)  # the process may have switched a moment before its warm-up exited
    return dict(info=info, cache=cache, kernels=kernels, folder=folder, outputs=np.load(out))


def copy_cache(cold_start, tmp_path, *, marker=True, log=False) -> tuple[Path, Path]:
    """A copy of the warmed cache (the kernels compiled), with or without its marker and log."""
    cache = tmp_path / "numba-cache"
    shutil.copytree(cold_start["cache"], cache)
    kernels = cache_folder(cache)
    if not marker:
        (kernels / warmup.MARKER_FILE).unlink()
    if not log:
        (kernels / warmup.LOG_FILE).unlink()
    return cache, kernels


def test_cold_start_runs_numpy_then_switches_to_numba(cold_start):
    info, out = cold_start["info"], cold_start["outputs"]
    assert info["requested"] == "auto"
    assert info["first_backend"] == "numpy" and "auto: numba once its kernels are compiled" in info["first_repr"]
    assert info["after_backend"] == "numba" and info["status"] == warmup.WARM, info
    assert info["warmer_pid"] is not None
    # the two backends agree at every real token, and in the attention probabilities
    keep = out["mask"].astype(bool)
    d = float(np.abs(out["first"] - out["after"])[keep].max())
    assert d <= TOL, f"last_hidden_state: numpy vs numba differ by {d:.3g}"
    d = float(np.abs(out["first_attn"] - out["after_attn"]).transpose(0, 2, 1, 3)[keep].max())
    assert d <= TOL, f"attentions: numpy vs numba differ by {d:.3g}"


def test_one_warmup_writes_a_marker_with_this_processes_key(cold_start):
    kernels = cold_start["kernels"]
    assert starts(kernels) == 1
    marker = json.loads((kernels / warmup.MARKER_FILE).read_text())
    assert marker["key"] == marker_key_now(cold_start["cache"])
    assert marker["pid"] == cold_start["info"]["warmer_pid"] and marker["forwards"] > 0
    assert "done:" in (kernels / warmup.LOG_FILE).read_text()


@pytest.fixture(scope="module")
def real_checkpoints(tmp_path_factory, checkpoint_factory, minilm_path):
    """Checkpoints written by transformers: BERT (fp32 and fp16), every family with its
    classification head, BERT's task heads, and MiniLM."""
    import torch
    from families import FAMILIES, build_family_checkpoint
    from task_models import build_task_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    folders = [checkpoint_factory(), checkpoint_factory(num_labels=3, torch_dtype=torch.float16), minilm_path]
    folders += [build_family_checkpoint(root / f, f, num_labels=2) for f in FAMILIES]
    folders += [build_task_checkpoint(root / t, t) for t in ("token-classification", "question-answering", "masked-lm")]
    return folders


def test_warm_cache_runs_numba_at_once_and_compiles_nothing(cold_start, real_checkpoints):
    # every kernel a forward calls was compiled by the warm-up with the argument types real models
    # pass (the strided q/k/v views, read-only broadcast views, attentions on and off, padding, each
    # family's embeddings and MPNet's position bias, the heads): nothing compiles here
    info = run_py(ONE_SHOT, *real_checkpoints, cache=cold_start["cache"])
    assert info["backends"] == ["numba"] * len(real_checkpoints) and info["status"] == warmup.WARM
    assert info["compiled"] == [], f"compiled in-process despite the warm cache: {info['compiled']}"
    assert not info["spawned"] and starts(cold_start["kernels"]) == 1


def test_stale_marker_is_not_trusted(cold_start, tmp_path):
    cache, kernels = copy_cache(cold_start, tmp_path)
    marker = json.loads((kernels / warmup.MARKER_FILE).read_text())
    marker["key"]["numba"] = "0.0.1"  # compiled by another Numba: says nothing about this one
    (kernels / warmup.MARKER_FILE).write_text(json.dumps(marker))
    info = run_py(ONE_SHOT, cold_start["folder"], cache=cache)
    assert info["backends"] == ["numpy"] and info["spawned"]
    wait_warmup_done(kernels)
    assert starts(kernels) == 1  # a later run retries: a new warm-up, and its marker has the right key
    assert json.loads((kernels / warmup.MARKER_FILE).read_text())["key"] == marker_key_now(cache)
    assert run_py(ONE_SHOT, cold_start["folder"], cache=cache)["backends"] == ["numba"]


def test_lock_of_a_dead_process_is_taken_over(cold_start, tmp_path):
    cache, kernels = copy_cache(cold_start, tmp_path, marker=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (kernels / warmup.LOCK_FILE).write_text(f"{dead.pid}\n")  # left behind by a warm-up that died
    info = run_py(ONE_SHOT, cold_start["folder"], cache=cache)
    assert info["backends"] == ["numpy"] and info["spawned"]
    wait_warmup_done(kernels)
    assert starts(kernels) == 1 and (kernels / warmup.MARKER_FILE).exists()


def test_a_running_warmup_is_not_started_twice(cold_start, tmp_path):
    cache, kernels = copy_cache(cold_start, tmp_path, marker=False)
    fd = os.open(kernels / warmup.LOCK_FILE, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a warm-up in another process holds it
    try:
        info = run_py(ONE_SHOT, cold_start["folder"], cache=cache)
        assert info["backends"] == ["numpy"] and not info["spawned"] and info["status"] == warmup.COMPILING
        assert starts(kernels) == 0
    finally:
        os.close(fd)


BLAS_SHARE = textwrap.dedent("""
    import json, sys
    from threadpoolctl import threadpool_info
    import numbert
    from numbert import layers

    def blas_threads():
        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    seen, linear = [], layers.linear
    def counting_linear(*args):  # NumpyOps looks layer functions up at each call
        seen.append(blas_threads())
        return linear(*args)
    layers.linear = counting_linear
    model = numbert.load(sys.argv[1])
    before = blas_threads()
    model(**model.tokenize(["I love cats!"]))
    print(json.dumps({"backend": model.backend, "before": before, "during": sorted(set(seen)),
                      "after": blas_threads()}))
""")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: nothing to leave")
def test_numpy_leaves_a_core_to_the_warmup(cold_start, tmp_path):
    # OpenBLAS's threads spin while they wait for each other: beside a busy warm-up they made a short
    # forward 10x slower. While the kernels compile, BLAS runs on one thread fewer, and only then.
    cache, kernels = copy_cache(cold_start, tmp_path, marker=False)
    fd = os.open(kernels / warmup.LOCK_FILE, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a warm-up in another process: this one waits on NumPy
    try:
        info = run_py(BLAS_SHARE, cold_start["folder"], cache=cache)
    finally:
        os.close(fd)
    cores = len(os.sched_getaffinity(0))
    assert info["backend"] == "numpy" and info["before"] == info["after"], info
    # a core left free already (OPENBLAS_NUM_THREADS below the cores): nothing to change
    assert info["during"] == [cores - 1 if info["before"] >= cores else info["before"]], info


def test_concurrent_cold_starts_spawn_one_detached_warmup(checkpoint_factory, tmp_path):
    cache = tmp_path / "numba-cache"
    procs = [subprocess.Popen([sys.executable, "-c", ONE_SHOT, str(checkpoint_factory())], env=env_for(cache),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=WAIT_S)  # returns when the process exits: the warm-up holds no pipe
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    kernels = cache_folder(cache)
    assert all(r["backends"] == ["numpy"] for r in results)
    assert sum(r["spawned"] for r in results) == 1, results
    deadline = time.monotonic() + 60
    while starts(kernels) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = warmup._lock_pid(str(kernels))
    try:
        assert starts(kernels) == 1
        if lock_held(kernels) and Path(f"/proc/{pid}").exists():  # detached: own session, no terminal, no pipe
            assert os.getsid(pid) == pid
            fds = {n: os.readlink(f"/proc/{pid}/fd/{n}") for n in (0, 1, 2)}
            assert fds[0] == "/dev/null" and fds[1] == fds[2] == os.path.realpath(kernels / warmup.LOG_FILE), fds
            assert os.getpriority(os.PRIO_PROCESS, pid) >= warmup.NICE
    finally:
        if lock_held(kernels) and pid:  # not needed further: its cache is thrown away
            os.kill(pid, 9)
        while lock_held(kernels):
            time.sleep(0.05)
    assert starts(kernels) == 1


def test_background_compile_off_compiles_in_process(cold_start, tmp_path):
    cache, kernels = copy_cache(cold_start, tmp_path, marker=False)  # kernels cached, no marker: auto would wait
    info = run_py(ONE_SHOT, cold_start["folder"], cache=cache, background="0")
    assert info["backends"] == ["numba"] and info["status"] == warmup.INLINE and not info["spawned"]
    assert starts(kernels) == 0 and not (kernels / warmup.MARKER_FILE).exists()


def test_explicit_backends_are_kept(cold_start, tmp_path):
    cache, kernels = copy_cache(cold_start, tmp_path, marker=False)
    code = ("import json, sys, numbert; from numbert import warmup; "
            "ms = [numbert.load(sys.argv[1], backend=b) for b in ('numba', 'numpy')]; "
            "print(json.dumps({'backends': [m.backend for m in ms], 'status': warmup._STATE.status}))")
    info = run_py(code, cold_start["folder"], cache=cache)
    assert info == {"backends": ["numba", "numpy"], "status": None}  # auto's machinery never ran
    assert starts(kernels) == 0


def test_a_forked_child_switches_too(cold_start, tmp_path):
    # a process forked while the warm-up runs (a multiprocessing worker) cannot wait on its parent's
    # child process; it watches the lock and the marker, and moves to the kernels as well
    cache, kernels = copy_cache(cold_start, tmp_path, marker=False)  # compiled, no marker: a short warm-up
    code = textwrap.dedent("""
        import json, os, sys, time
        import numbert
        model = numbert.load(sys.argv[1])
        batch = model.tokenize(["I love cats!"])
        before = model.backend
        pid = os.fork()
        if pid == 0:
            t = time.perf_counter()
            while model.backend != "numba" and time.perf_counter() - t < {wait}:
                model(**batch)
                time.sleep(0.1)
            os._exit(0 if model.backend == "numba" else 3)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({{"before": before, "child_exit": os.waitstatus_to_exitcode(status)}}))
    """).format(wait=WAIT_S)
    info = run_py(code, cold_start["folder"], cache=cache)
    assert info == {"before": "numpy", "child_exit": 0}
    wait_warmup_done(kernels)
    assert starts(kernels) == 1


# A read-only install as tests/test_threads.py simulates it: no writable NUMBA_CACHE_DIR or home, and
# Numba's in-tree locator patched to find the package's __pycache__ unwritable. The patch holds in
# this process only, so its warm-up (a new interpreter) finds another cache folder than its parent
# and refuses to compile there: a failed warm-up, which must leave the process on NumPy, no error.
READ_ONLY = textwrap.dedent("""
    import json, sys, tempfile, time
    from numba.core import caching
    caching.InTreeCacheLocator.from_function = classmethod(lambda cls, py_func, py_file: None)
    if sys.argv[2] == "no-temp":  # the per-user temp folder cannot be made either: no cache at all
        tempfile.gettempdir = lambda: "/dev/null/tmp"
    import numbert
    from numbert import warmup
    from numbert.kernels import jit
    model = numbert.load(sys.argv[1])
    batch = model.tokenize(["I love cats!", "He hates pineapple pizza."])
    t = time.perf_counter()
    out = model(**batch)
    while warmup._STATE.status == warmup.COMPILING and time.perf_counter() - t < 120:
        out = model(**batch)
        time.sleep(0.1)
    print(json.dumps({"hidden": out.last_hidden_state.tolist(), "backend": model.backend, "cache": jit.CACHE,
                      "fallback": jit.CACHE_FALLBACK_DIR, "status": warmup._STATE.status,
                      "folder": warmup._STATE.folder}))
""")


@pytest.mark.parametrize("temp", ["temp", "no-temp"])
def test_read_only_install_and_a_failed_warmup(checkpoint_factory, tmp_path, temp):
    folder = checkpoint_factory()
    unwritable = "/dev/null/numbert-test"
    env = {**env_for(Path(unwritable) / "numba"), "HOME": unwritable, "XDG_CACHE_HOME": unwritable + "/cache",
           "TMPDIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", READ_ONLY, str(folder), temp], env=env, capture_output=True, text=True,
                       timeout=WAIT_S)
    assert r.returncode == 0 and r.stderr == "", r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    ref, mask = numbert_numpy(folder)
    assert np.abs(np.asarray(got["hidden"], np.float32) - ref)[mask.astype(bool)].max() <= TOL  # at real tokens
    if temp == "temp":  # cached in the private temp folder; the warm-up failed there: NumPy, quietly
        assert got["cache"] and got["folder"].startswith(got["fallback"])
        assert got["status"] == warmup.FAILED and got["backend"] == "numpy"
        assert "failed:" in (Path(got["folder"]) / warmup.LOG_FILE).read_text()
        assert not (Path(got["folder"]) / warmup.MARKER_FILE).exists()
    else:  # no cache anywhere: nothing to warm, compiled in-process
        assert got["cache"] is False and got["status"] == warmup.INLINE and got["backend"] == "numba"


def numbert_numpy(folder) -> tuple[np.ndarray, np.ndarray]:
    import numbert

    m = numbert.load(folder, backend="numpy")
    batch = m.tokenize(["I love cats!", "He hates pineapple pizza."])
    return m(**batch).last_hidden_state, batch.attention_mask


def test_cli_on_a_cold_cache_answers_and_prints_only_its_result(checkpoint_factory, cold_start, tmp_path):
    # the README's main job on a fresh install: the answer, on NumPy, and nothing from the warm-up
    cache = tmp_path / "numba-cache"
    args = [sys.executable, "-m", "numbert", "classify", "I love cats!", "He hates pineapple pizza.",
            "--model", str(checkpoint_factory()), "--json"]
    r = subprocess.run(args, env=env_for(cache), capture_output=True, text=True, timeout=WAIT_S, cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr[-3000:]
    warm = subprocess.run(args, env=env_for(cold_start["cache"]), capture_output=True, text=True, timeout=WAIT_S,
                          cwd=tmp_path)
    cold_rows, warm_rows = ([json.loads(line) for line in out.stdout.splitlines()] for out in (r, warm))
    assert [row["label"] for row in cold_rows] == [row["label"] for row in warm_rows]  # as on the kernels
    assert np.allclose([row["score"] for row in cold_rows], [row["score"] for row in warm_rows], atol=TOL, rtol=0)
    kernels = cache_folder(cache)
    deadline = time.monotonic() + 60
    while starts(kernels) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert starts(kernels) == 1
    pid = warmup._lock_pid(str(kernels))
    if lock_held(kernels) and pid:  # not needed further
        os.kill(pid, 9)


def test_info_reports_the_kernel_cache_and_starts_nothing(cold_start, tmp_path):
    def info(cache):
        r = subprocess.run([sys.executable, "-m", "numbert", "info", str(cold_start["folder"]), "--json"],
                           env=env_for(cache), capture_output=True, text=True, timeout=WAIT_S, check=True)
        return json.loads(r.stdout)["kernels"]

    warm = info(cold_start["cache"])
    assert warm["state"] == "warm" and warm["cache_folder"] == str(cold_start["kernels"]) and warm["compile_cpu_s"] > 0
    cold = info(tmp_path / "empty-cache")
    assert cold["state"] == "cold" and cold["background_compile"]
    assert not list((tmp_path / "empty-cache").rglob(warmup.LOCK_FILE))  # info starts no warm-up
