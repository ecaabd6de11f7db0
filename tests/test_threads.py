"""The threading mechanism (kernels/jit.py): which Numba threading layer runs, whatever was imported
first; many Python threads sharing one model; fork / spawn / forkserver after a kernel ran; the
Numba cache when no folder numbert would cache in is writable; NUMBERT_NUM_THREADS named.

These check the mechanism, not timings (python -m bench.threadlayer measures those). Anything
that could hang or abort (a deadlocked pool, workqueue's abort on concurrent launches) runs in
a subprocess with a timeout, so that a failure fails one test and never the whole suite.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import numbert
from numbert.kernels import jit

TIMEOUT = 240  # seconds; a healthy run takes a few (the suite shares a 2-core machine)

TEXTS = ["I love cats!", "He hates pineapple pizza.", "Café au lait, naïve résumé.", "good " * 30,
         "東京は日本の首都です。", "?!", "The quick brown fox jumps over the lazy dog."]


@pytest.fixture(scope="module")
def ckpt(checkpoint_factory):
    return checkpoint_factory(num_labels=3, max_position_embeddings=128)


def run_python(code, tmp_path, *args, env=None, timeout=TIMEOUT, stderr=False):
    """Run `code` as a script file in a fresh interpreter; its last stdout line parsed as JSON
    (and, with stderr=True, what it wrote to stderr)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    base = dict(os.environ)
    base.pop("NUMBA_THREADING_LAYER", None)  # numbert's own choice is under test, not the caller's
    env = {**base, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    try:
        out = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                             env=env, timeout=timeout, cwd=tmp_path)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"no answer within {timeout} s (a hang); stderr:\n{(e.stderr or b'')[-2000:]!r}")
    assert out.returncode == 0, f"exit {out.returncode}; stderr:\n{out.stderr[-3000:]}"
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return (got, out.stderr) if stderr else got


@pytest.mark.parametrize("prelude", [
    "import torch; torch.ones(64, 64) @ torch.ones(64, 64)  # torch's OpenMP runtime loaded and running",
    "import numba  # the user imported Numba first",
])
@pytest.mark.parametrize("threads", [None, 2])
def test_threading_layer_whatever_came_first(ckpt, tmp_path, prelude, threads):
    # threads=2 makes load() start Numba's pool (set_num_threads) before any kernel module is imported
    got = run_python(f"""
        {prelude}
        import json, sys
        import numba, numbert
        m = numbert.load(sys.argv[1], threads={threads})
        m(**m.tokenize(["I love cats!"]))
        print(json.dumps(numba.threading_layer()))
    """, tmp_path, ckpt)
    assert got == jit.THREADING_LAYER == expected_layer()


def expected_layer():
    # tbb where the TBB library that Numba accepts loads (what Numba checks: its interface
    # version), else workqueue: asked here of the library directly, not of numbert
    try:
        lib = ctypes.CDLL("libtbb.so.12")
        lib.TBB_runtime_interface_version.restype = ctypes.c_int
        return "tbb" if lib.TBB_runtime_interface_version() >= 12060 else "workqueue"
    except OSError:
        return "workqueue"


def test_threading_layer_without_tbb_is_workqueue(ckpt, tmp_path):
    # TBB missing (its Numba extension cannot import): numbert runs on workqueue, which needs nothing
    got = run_python("""
        import json, sys
        sys.modules["numba.np.ufunc.tbbpool"] = None  # `from numba.np.ufunc import tbbpool` fails
        import numba, numbert
        from numbert.kernels import jit
        m = numbert.load(sys.argv[1], threads=2)
        m(**m.tokenize(["I love cats!"] * 4))
        print(json.dumps([jit.THREADING_LAYER, numba.threading_layer()]))
    """, tmp_path, ckpt)
    assert got == ["workqueue", "workqueue"]


# numbert's own choice (tbb where installed, as in the test extra) and workqueue, its fallback
LAYERS = pytest.mark.parametrize("layer", [None, "workqueue"], ids=["numbert's layer", "workqueue"])


def layer_env(layer):
    return {"NUMBA_THREADING_LAYER": layer} if layer else None


def test_threading_layer_in_this_process(ckpt):
    m = numbert.load(ckpt)
    m(**m.tokenize(TEXTS))
    if "NUMBA_THREADING_LAYER" not in os.environ:
        assert numba.threading_layer() == jit.THREADING_LAYER


def test_explicit_user_choice_is_kept(ckpt, tmp_path):
    got = run_python("""
        import json, sys
        import numba
        numba.config.THREADING_LAYER = "omp"  # chosen in code by the user, before numbert
        import numbert
        m = numbert.load(sys.argv[1])
        m(**m.tokenize(["I love cats!"]))
        print(json.dumps(numba.threading_layer()))
    """, tmp_path, ckpt)
    assert got == "omp"


@LAYERS
def test_many_threads_share_one_model(ckpt, tmp_path, minilm_path, layer):
    # >= 100 concurrent forward calls from 8 threads, on pre-tokenized batches of different
    # shapes, equal to a serial run. workqueue aborts the process on two concurrent launches,
    # so this also proves the launch lock (run in a subprocess: an abort fails only this test).
    got = run_python("""
        import json, sys, threading
        import numba
        import numpy as np
        import numbert
        texts = json.loads(sys.argv[2])
        results = {}
        for name, path in (("tiny", sys.argv[1]), ("minilm", sys.argv[3])):
            m = numbert.load(path)
            batches = [m.tokenize(texts[:k], max_length=ml) for k in (1, 3, len(texts)) for ml in (None, 8)]
            serial = [m(**b) for b in batches]
            bad, calls = [], []
            def work(t):
                for i in range(13):
                    j = (t + i) % len(batches)
                    out = m(**batches[j])
                    calls.append(1)
                    same = np.array_equal(out.last_hidden_state, serial[j].last_hidden_state) and (
                        out.logits is None or np.array_equal(out.logits, serial[j].logits))
                    if not same:
                        bad.append(j)
            ts = [threading.Thread(target=work, args=(t,)) for t in range(8)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            results[name] = {"calls": len(calls), "bad": bad}
        results["layer"] = numba.threading_layer()
        print(json.dumps(results))
    """, tmp_path, ckpt, json.dumps(TEXTS), minilm_path, env=layer_env(layer))
    assert got.pop("layer") == (layer or expected_layer())
    for name, r in got.items():
        assert r["calls"] == 104, name
        assert r["bad"] == [], f"{name}: {len(r['bad'])} of 104 concurrent calls differ from the serial run"


def test_thread_count_holds_in_every_thread(ckpt, tmp_path):
    # numba.set_num_threads is per Python thread: load(threads=1) in the main thread must still
    # mean 1 Numba thread for a call made from another thread (BLAS's limit is process-wide)
    got = run_python("""
        import json, sys, threading
        import numba, numbert
        m = numbert.load(sys.argv[1], threads=1)
        batch = m.tokenize(["I love cats!"])
        seen = []
        def work():
            before = numba.get_num_threads()
            m(**batch)
            seen.append((before, numba.get_num_threads()))
        t = threading.Thread(target=work)
        t.start()
        t.join()
        print(json.dumps({"cores": numba.config.NUMBA_NUM_THREADS, "seen": seen[0]}))
    """, tmp_path, ckpt)
    if got["cores"] < 2:
        pytest.skip("one core: nothing to limit")
    assert got["seen"] == [got["cores"], 1]  # the new thread started at Numba's default, ran on 1


FORK_POOL = """
    import json, multiprocessing as mp, sys, threading
    import numba
    import numpy as np
    import numbert
    from numbert.kernels import jit

    texts = json.loads(sys.argv[2])
    model = numbert.load(sys.argv[1])
    batches = [model.tokenize(texts[:k]) for k in (1, 2, len(texts))]

    def logits(j):
        return model(**batches[j]).logits.tolist()

    if __name__ == "__main__":
        method = sys.argv[3]
        parent = [logits(j) for j in range(len(batches))]  # kernels ran (and Numba's pool started)
        held = threading.Event()
        release = threading.Event()
        if method == "fork":
            # another thread is inside a kernel launch at the moment of fork: the child must not
            # inherit the launch lock as held
            def hold():
                with jit._LAUNCH_LOCK:
                    held.set()
                    release.wait()
            threading.Thread(target=hold).start()
            held.wait()
        with mp.get_context(method).Pool(2) as pool:
            children = pool.map(logits, range(len(batches)) , chunksize=1)
        release.set()
        print(json.dumps({"same": children == parent, "classify": numbert.classify("hi", model)["label"],
                          "layer": numba.threading_layer()}))
"""


@LAYERS
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_process_pool_after_a_kernel_ran(ckpt, tmp_path, method, layer):
    got = run_python(FORK_POOL, tmp_path, ckpt, json.dumps(TEXTS), method, env=layer_env(layer))
    assert got["layer"] == (layer or expected_layer())
    assert got["same"], f"{method} pool results differ from the parent's"
    assert got["classify"]


@LAYERS
def test_fork_pool_after_a_worker_thread_ran_the_first_kernel(ckpt, tmp_path, layer):
    # A server's way: the first forward pass in a request thread, then a fork pool from the main
    # thread. Numba's tbb pool is fork-safe only from the thread that started it (kernels/jit.py
    # starts it at import, on the main thread); a fork from another prints a warning in C.
    got, err = run_python("""
        import json, multiprocessing as mp, sys, threading
        import numba
        import numbert
        texts = json.loads(sys.argv[2])
        model = numbert.load(sys.argv[1])
        batch = model.tokenize(texts)
        first = []
        t = threading.Thread(target=lambda: first.append(model(**batch).logits.tolist()))
        t.start(); t.join()
        def logits(_):
            return model(**batch).logits.tolist()
        if __name__ == "__main__":
            with mp.get_context("fork").Pool(2) as pool:
                children = pool.map(logits, range(4), chunksize=1)
            print(json.dumps({"same": all(c == first[0] for c in children), "layer": numba.threading_layer()}))
    """, tmp_path, ckpt, json.dumps(TEXTS * 8), env=layer_env(layer), stderr=True)
    assert got["layer"] == (layer or expected_layer())
    assert got["same"], "fork pool results differ from the parent's"
    assert "non-main thread" not in err, err[-2000:]


# Simulated read-only install: NUMBA_CACHE_DIR, HOME and XDG_CACHE_HOME point below /dev/null
# (no process can create folders there, root included, unlike chmod which root ignores), and
# Numba's in-tree locator (the package's __pycache__, writable here because it is the repo) is
# patched to report "not writable", as it does for a read-only site-packages.
READ_ONLY = """
    import json, os, sys, tempfile
    from numba.core import caching
    caching.InTreeCacheLocator.from_function = classmethod(lambda cls, py_func, py_file: None)
    if sys.argv[2] == "no-temp":  # the per-user temp folder cannot be made either
        tempfile.gettempdir = lambda: "/dev/null/tmp"
    import numbert
    from numbert.kernels import jit
    m = numbert.load(sys.argv[1])
    out = m(**m.tokenize(["I love cats!", "He hates pineapple pizza."]))
    files = sorted(os.listdir(jit.CACHE_FALLBACK_DIR)) if jit.CACHE_FALLBACK_DIR else []
    print(json.dumps({"logits": out.logits.tolist(), "cache": jit.CACHE, "dir": jit.CACHE_FALLBACK_DIR,
                      "files": files}))
"""


@pytest.mark.parametrize("temp", ["temp", "no-temp"])
def test_cache_falls_back_when_nothing_is_writable(ckpt, tmp_path, temp):
    unwritable = "/dev/null/numbert-test"
    env = {"NUMBA_CACHE_DIR": unwritable + "/numba", "HOME": unwritable, "XDG_CACHE_HOME": unwritable + "/cache",
           "TMPDIR": str(tmp_path)}
    got = run_python(READ_ONLY, tmp_path, ckpt, temp, env=env)
    m = numbert.load(ckpt, backend="numpy")
    ref = m(**m.tokenize(["I love cats!", "He hates pineapple pizza."])).logits
    np.testing.assert_allclose(got["logits"], ref, atol=1e-5, rtol=0)
    if temp == "temp":  # cached in a private per-user folder of the temp dir
        assert got["cache"] and got["dir"] == str(tmp_path / f"numbert-numba-cache-{os.getuid()}")
        assert any(sub.startswith("kernels_") for sub in got["files"]), got["files"]  # Numba wrote there
        assert os.stat(got["dir"]).st_mode & 0o777 == 0o700
    else:  # nowhere to cache: compiled in memory, no error
        assert got["cache"] is False and got["dir"] is None


def test_num_threads_variable_is_named(monkeypatch):
    from numbert.threads import resolve_threads

    monkeypatch.setenv("NUMBERT_NUM_THREADS", "0")
    with pytest.raises(ValueError, match="NUMBERT_NUM_THREADS must be a positive integer, found 0"):
        resolve_threads()
    monkeypatch.setenv("NUMBERT_NUM_THREADS", "-3")
    with pytest.raises(ValueError, match="NUMBERT_NUM_THREADS must be a positive integer, found -3"):
        resolve_threads()
    with pytest.raises(ValueError, match="^threads must be a positive integer, found 0"):
        resolve_threads(0)


def _blas_threads(only=None):  # {library path: its thread count}, of the libraries in `only` if given
    from threadpoolctl import threadpool_info

    now = {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    return now if only is None else {path: now.get(path) for path in only}


def test_large_gemm_gives_blas_its_threads_back():
    # Above SMALL_M rows kernels.linear runs single-threaded BLAS parts (kernels/linear.py
    # _BlasParts): the BLAS libraries' own thread counts are back afterwards, after an error too.
    from numbert import kernels as K
    from numbert.kernels import linear as _  # noqa: F401  (the module is loaded)

    LINEAR = sys.modules["numbert.kernels.linear"]
    rng = np.random.default_rng(0)
    M = LINEAR.BLAS_PARTS_M + 3
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((M, 48), (40, 48), (40,)))
    before = _blas_threads()
    y = K.linear(x, w, b)
    assert np.abs(y - (x @ w.T + b)).max() <= 1e-4
    assert _blas_threads(before) == before  # a library loaded meanwhile (e.g. scipy's) is not compared
    with pytest.raises(ValueError):
        K.linear(x[:, :47], w, b)  # K 47 against the weight's 48
    assert _blas_threads(before) == before  # a library loaded meanwhile (e.g. scipy's) is not compared


def test_threads_share_the_large_gemm():
    # Many Python threads at once on the BLAS parts (one lock, one pool): each result equals
    # the same call made alone, bit for bit.
    from concurrent.futures import ThreadPoolExecutor

    from numbert import kernels as K

    LINEAR = sys.modules["numbert.kernels.linear"]
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal((72, 32)).astype(np.float32), rng.standard_normal(72).astype(np.float32)
    xs = [rng.standard_normal((LINEAR.BLAS_PARTS_M + 7 * i, 32)).astype(np.float32) for i in range(24)]
    alone = [K.linear_act(x, w, b, "gelu") for x in xs]
    before = _blas_threads()
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda x: K.linear_act(x, w, b, "gelu"), xs * 4))
    assert all(np.array_equal(a, t) for a, t in zip(alone * 4, together))
    assert _blas_threads(before) == before  # a library loaded meanwhile (e.g. scipy's) is not compared
