"""The dense layers' GEMM through several libraries, same process, interleaved: `python -m bench.gemm`.

y[M, out] = x[M, in] @ W^T for the weight shapes of BERT-base and all-MiniLM-L6-v2 (W as
the checkpoint stores it, [out, in]) at M = B*T rows, in GFLOP/s (2*M*in*out / time, median
of the timed calls; the output buffer is allocated once per shape, so allocation is not
timed). Libraries, each with the same thread count:

  numpy       x @ W.T: NumPy's BLAS (OpenBLAS in the wheels) reads W transposed in place,
              as numbert.kernels.linear does
  numpy-T     x @ Wt with Wt = W.T made contiguous [in, out] once at load
  blis        blis.py.gemm(x, W, trans2=True): the `blis` package (cython-blis, used by
              thinc/spaCy)
  mkl         cblas_sgemm from libmkl_rt (the `mkl` wheel) through ctypes
  mkl-packed  cblas_sgemm_compute on W packed once by cblas_sgemm_pack (MKL's pre-packed
              weights; the packing is done outside the timing, as it would be at load)
  torch       torch.matmul(x, W.T, out=y) (reference; torch.set_num_threads)
  numbert     numbert's own Numba GEMM (numbert.kernels.linear, W read in place), at every M
              here, though numbert runs it only up to kernels.linear.SMALL_M rows

A library that is not installed is reported as absent. MKL is looked up in --mkl-dir, then
$MKL_LIB_DIR, then <sys.prefix>/lib (where `pip install mkl` puts it).

Writes bench/results/gemm.json and bench/results/gemm.md (table); --out takes another .json
path or a folder (FOLDER/gemm.json).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

# Up to four thread pools share the cores here (OpenBLAS's, MKL's Intel OpenMP, torch's GNU
# OpenMP; blis runs on the calling thread). An OpenMP pool that keeps spinning after its call
# (200 ms for Intel's) would slow whichever library runs next in the rotation, so the OpenMP
# pools sleep when idle, as numbert's own does: set before any of them loads. OpenBLAS keeps
# its default (as numbert runs it): making it sleep at once (OPENBLAS_THREAD_TIMEOUT=4) cut its
# 2-thread rate at M=128 several-fold on the loaded 2-core machine. A value already in the
# environment wins.
for _var, _value in (("OMP_WAIT_POLICY", "PASSIVE"), ("KMP_BLOCKTIME", "0")):
    os.environ.setdefault(_var, _value)

import numpy as np  # noqa: E402

f32 = np.float32

ROWS = (16, 32, 64, 128, 1024, 4096, 16384)
WEIGHTS = {  # [out, in] per model
    "bert-base": {"attention.output 768x768": (768, 768), "intermediate 3072x768": (3072, 768),
                  "output 768x3072": (768, 3072), "fused qkv 2304x768": (2304, 768)},
    "minilm": {"attention.output 384x384": (384, 384), "intermediate 1536x384": (1536, 384),
               "output 384x1536": (384, 1536), "fused qkv 1152x384": (1152, 384)},
}
LIBS = ("numpy", "numpy-T", "blis", "mkl", "mkl-packed", "torch", "numbert")

# CBLAS constants
ROW_MAJOR, NO_TRANS, TRANS, PACKED, B_MATRIX = 101, 111, 112, 151, 162


class MKL:
    def __init__(self, folder: Path, threads: int):
        # libmkl_rt picks its threading layer at load; Intel's OpenMP (libiomp5, from the
        # intel-openmp wheel beside it) must be loadable first
        omp = folder / "libiomp5.so"
        if omp.exists():
            ctypes.CDLL(str(omp), mode=ctypes.RTLD_GLOBAL)
        names = sorted(folder.glob("libmkl_rt.so*"))
        if not names:
            raise OSError(f"no libmkl_rt.so in {folder}")
        self.lib = lib = ctypes.CDLL(str(names[0]), mode=ctypes.RTLD_GLOBAL)
        lib.MKL_Set_Num_Threads(threads)
        buf = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(buf, 256)
        self.version = buf.value.decode()
        self.threads = lib.MKL_Get_Max_Threads()
        i, p, f = ctypes.c_int, ctypes.c_void_p, ctypes.c_float
        lib.cblas_sgemm.argtypes = [i, i, i, i, i, i, f, p, i, p, i, f, p, i]
        lib.cblas_sgemm_pack_get_size.argtypes = [i, i, i, i]
        lib.cblas_sgemm_pack_get_size.restype = ctypes.c_size_t
        lib.cblas_sgemm_pack.argtypes = [i, i, i, i, i, i, f, p, i, p]
        lib.cblas_sgemm_compute.argtypes = [i, i, i, i, i, i, p, i, p, i, f, p, i]

    def gemm_nt(self, x, w, y):  # y[M, N] = x[M, K] @ w[N, K]^T
        M, K = x.shape
        N = w.shape[0]
        self.lib.cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS, M, N, K, 1.0, x.ctypes.data, K, w.ctypes.data, K, 0.0,
                             y.ctypes.data, N)

    def pack_b(self, w, M):  # w [N, K] -> MKL's packed form of w^T for an M-row product
        N, K = w.shape
        size = self.lib.cblas_sgemm_pack_get_size(B_MATRIX, M, N, K)
        dest = np.empty(size // 4 + 16, f32)
        self.lib.cblas_sgemm_pack(ROW_MAJOR, B_MATRIX, TRANS, M, N, K, 1.0, w.ctypes.data, K, dest.ctypes.data)
        return dest, N

    def gemm_packed(self, x, packed, y):
        dest, N = packed
        M, K = x.shape
        self.lib.cblas_sgemm_compute(ROW_MAJOR, NO_TRANS, PACKED, M, N, K, x.ctypes.data, K, dest.ctypes.data, K,
                                     0.0, y.ctypes.data, N)


def find_mkl(folder):
    for cand in (folder, os.environ.get("MKL_LIB_DIR"), os.path.join(sys.prefix, "lib")):
        if cand and sorted(Path(cand).glob("libmkl_rt.so*")):
            return Path(cand)
    return None


def setup_libs(threads, mkl_dir):  # -> {lib: (prepare(w, M) -> state, call(x, state, y))}, {lib: note}
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(threads, user_api="blas")
    blas = [f"{i['internal_api']} {i['version']} ({i.get('architecture', '?')}, {i['num_threads']} threads)"
            for i in threadpool_info() if i["user_api"] == "blas"]
    libs, notes = {}, {"numpy": f"numpy {np.__version__}: " + "; ".join(blas)}
    libs["numpy"] = (lambda w, M: w, lambda x, w, y: np.matmul(x, w.T, out=y))
    libs["numpy-T"] = (lambda w, M: np.ascontiguousarray(w.T), lambda x, wt, y: np.matmul(x, wt, out=y))
    notes["numpy-T"] = "the same BLAS, weight stored [in, out]"
    try:
        import blis
        import blis.py

        libs["blis"] = (lambda w, M: w, lambda x, w, y: blis.py.gemm(x, w, out=y, trans2=True, beta=0.0))
        from importlib.metadata import version

        notes["blis"] = f"blis {version('blis')} (runs on the calling thread only: the PyPI build is single-threaded)"
    except ImportError as e:
        notes["blis"] = f"absent ({e})"
    where = find_mkl(mkl_dir)
    if where is None:
        notes["mkl"] = notes["mkl-packed"] = "absent (pip install mkl; or --mkl-dir)"
    else:
        try:
            mkl = MKL(where, threads)
            libs["mkl"] = (lambda w, M: w, mkl.gemm_nt)
            libs["mkl-packed"] = (mkl.pack_b, mkl.gemm_packed)
            notes["mkl"] = f"{mkl.version}, {mkl.threads} threads, from {where}"
            notes["mkl-packed"] = "cblas_sgemm_pack of W once per shape, cblas_sgemm_compute timed"
        except OSError as e:
            notes["mkl"] = notes["mkl-packed"] = f"absent ({e})"
    try:
        import torch

        torch.set_num_threads(threads)
        libs["torch"] = (lambda w, M: torch.from_numpy(w),
                         lambda x, w, y: torch.matmul(torch.from_numpy(x), w.T, out=torch.from_numpy(y)))
        notes["torch"] = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError as e:
        notes["torch"] = f"absent ({e})"
    from numbert.kernels import jit
    from numbert.threads import set_threads

    linear = sys.modules["numbert.kernels.linear"]  # the module (numbert.kernels.linear is its function)
    set_threads(threads)
    libs["numbert"] = (lambda w, M: (w, np.zeros(w.shape[0], f32)),
                       lambda x, wb, y: linear._linear_tiles(x, wb[0], wb[1], 0, jit.launch_threads(), y))
    notes["numbert"] = (f"numbert.kernels.linear's Numba GEMM ({jit.launch_threads()} threads, "
                        f"{jit.select_threading_layer()} layer); numbert calls it for M <= {linear.SMALL_M} rows")
    return libs, notes



def bench_shape(libs, M, n_out, n_in, repeats, rng):  # -> {lib: GFLOP/s median}, {lib: best}, {lib: max diff}
    x = rng.standard_normal((M, n_in), dtype=f32)  # [M, in]
    w = (rng.standard_normal((n_out, n_in), dtype=f32) / np.sqrt(n_in)).astype(f32)  # [out, in]
    states = {name: prep(w, M) for name, (prep, _) in libs.items()}
    outs = {name: np.empty((M, n_out), f32) for name in libs}  # [M, out] each
    names = list(libs)
    for name in names:  # warm-up
        libs[name][1](x, states[name], outs[name])
    ref = outs["numpy"]
    diffs = {name: float(np.abs(outs[name] - ref).max()) for name in names}
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
            call = libs[name][1]
            t = time.perf_counter()
            call(x, states[name], outs[name])
            times[name].append(time.perf_counter() - t)
    flops = 2 * M * n_in * n_out
    return ({name: flops / statistics.median(ts) / 1e9 for name, ts in times.items()},
            {name: flops / min(ts) / 1e9 for name, ts in times.items()}, diffs)


def table(result, key="gflops") -> str:
    libs = [name for name in LIBS if name in result["libs"] and not result["libs"][name].startswith("absent")]
    lines = ["| model | weight [out x in] | M | " + " | ".join(libs) + " | best / numpy |",
             "|---|---|---:|" + "---:|" * (len(libs) + 1)]
    for r in result["rows"]:
        g = r[key]
        best = max(libs, key=lambda n: g[n])
        lines.append(f"| {r['model']} | {r['weight']} | {r['M']} | " + " | ".join(f"{g[n]:.0f}" for n in libs) +
                     f" | {best} {g[best] / g['numpy']:.2f} |")
    return "\n".join(lines)


def summary(result, key="gflops", rows=(128, 1024, 4096)) -> str:
    # geometric mean of each library's rate relative to numpy over the shapes that matter
    libs = [name for name in LIBS if name in result["libs"] and not result["libs"][name].startswith("absent")]
    sel = [r for r in result["rows"] if r["M"] in rows]
    if not sel:  # a run with other row counts (python -m bench --quick): all of them
        rows = sorted({r["M"] for r in result["rows"]})
        sel = result["rows"]
    out = [f"Geometric mean of the rate relative to numpy (x @ W.T) over M in {list(rows)} "
           f"({len(sel)} shapes), {'medians' if key == 'gflops' else 'best calls'}:", ""]
    for name in libs:
        ratios = [r[key][name] / r[key]["numpy"] for r in sel]
        gm = float(np.exp(np.mean(np.log(ratios))))
        out.append(f"- {name}: {gm:.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.gemm")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=7)  # >= the number of libraries: each follows every other
    ap.add_argument("--rows", default=",".join(map(str, ROWS)))
    ap.add_argument("--models", default="bert-base,minilm")
    ap.add_argument("--mkl-dir", default=None)
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "gemm.json"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".json":
        if out.suffix:
            ap.error(f"--out {args.out}: expected a .json path or a folder")
        out = out / "gemm.json"
    from .report import machine

    libs, notes = setup_libs(args.threads, args.mkl_dir)
    started = time.time()
    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    rows = []
    for model in args.models.split(","):
        for label, (n_out, n_in) in WEIGHTS[model].items():
            for M in (int(m) for m in args.rows.split(",")):
                repeats = args.repeats if M < 4096 else max(3, args.repeats // 2)
                g, best, diffs = bench_shape(libs, M, n_out, n_in, repeats, rng)
                rows.append({"model": model, "weight": label, "M": M, "gflops": g, "gflops_best": best,
                             "max_abs_diff": diffs})
                print(model, label, M, " ".join(f"{n} {v:.0f}" for n, v in g.items()), flush=True)
    result = {"when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "seconds": time.time() - started,
              "threads": args.threads, "repeats": args.repeats, "machine": machine(), "libs": notes,
              "env": {v: os.environ.get(v) for v in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "OPENBLAS_THREAD_TIMEOUT")},
              "load_before": load_before, "load_after": os.getloadavg(), "note": args.note, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    m = result["machine"]
    md = [f"# GEMM libraries on numbert's dense-layer shapes ({result['when']})", "",
          f"`python -m bench.gemm` in {result['seconds']:.0f} s. Machine: {m['cpu']}, {m['cores']} CPUs, {m['simd']}, "
          f"L2 {m['l2']}, L3 {m['l3']}. {args.threads} threads for every library, fp32. "
          f"Load average before / after: {load_before[0]:.1f} / {result['load_after'][0]:.1f}. Idle thread pools "
          f"sleep: " + ", ".join(f"{v}={os.environ.get(v)}" for v in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME",
                                                                       "OPENBLAS_THREAD_TIMEOUT")) + ".", ""]
    if args.note:
        md += [args.note, ""]
    md += [f"- {n}: {notes[n]}" for n in LIBS if n in notes]
    md += ["", "GFLOP/s (2*M*in*out / median time of the timed calls, libraries interleaved in rotating order):",
           "", table(result), "", summary(result), "",
           "GFLOP/s of the best (fastest) call of each library, same run: on a shared, loaded machine other "
           "processes only ever add time, so the best call is the closer estimate of what a library does on "
           "an idle machine:", "", table(result, "gflops_best"), "", summary(result, "gflops_best"), ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
