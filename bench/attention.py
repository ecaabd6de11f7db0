"""The attention kernel against sgemm, same process, interleaved: `python -m bench.attention`.

For BERT-base (H=768, 12 heads, hs=64) and MiniLM (H=384, 12 heads, hs=32) at B = 1, 8, 32
and T = 128, 512, times each attention implementation and, in the same rotation, the dense
layer sgemm of that point ([B*T, H] @ [H, 4H] as numbert calls it, x @ W.T with W [4H, H]).
Q, K, V are column slices of one [B, T, 3H] array, as the fused QKV GEMM hands them over;
no padding. GFLOP/s of attention = 4 * B * nh * T * T * hs (the two products) / time.

Writes bench/results/attention.json and prints a markdown table. Options:
  --impl NAME=module:function   (repeatable) the implementations to compare; default: the
                                kernel (numbert.kernels.attention, on explicit vectors where the
                                CPU has AVX-512), the plain kernel (plain_kernel below: the one
                                for other CPUs) and the first, row-at-a-time kernel
                                (bench.attention_rowwise); numpy=numbert.layers:attention
                                is the NumPy reference (it builds [B, nh, T, T])
  --repeats N                   timed calls per implementation per point (median; default 5)
  --points B:T,...              default 1:128,8:128,32:128,1:512,8:512,32:512
  --models bert-base,minilm
  --threads N                   Numba and BLAS threads (default: all cores)
  --clock wall|cpu              wall: perf_counter (the target's measure); cpu: the process's CPU
                                time (process_time), which time-slicing by other processes on a
                                shared machine does not inflate; with --threads 1 it compares the
                                kernels' per-core efficiency
  --out PATH                    JSON output, a .json path or a folder (then FOLDER/attention.json);
                                the markdown table goes beside it (.md). Default
                                bench/results/attention.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


f32 = np.float32

MODELS = {"bert-base": (768, 12), "minilm": (384, 12)}  # H, heads
DEFAULT_IMPLS = ["kernel=numbert.kernels.attention:attention", "plain=bench.attention:plain_kernel",
                 "rowwise=bench.attention_rowwise:attention"]
DEFAULT_POINTS = "1:128,8:128,32:128,1:512,8:512,32:512"
WARM_CALLS = 7  # calls back to back per implementation and point, after the paused ones
# The pause before each timed call (the grid's is bench.run.PAUSE_S = 0.25 s). Each rotation here
# has an sgemm on OpenBLAS's own threads, whose workers spin for a while after it. In one test
# (numbert on tbb, 2-core Xeon) attention at BERT-base 1x512 ran 7 back-to-back calls at 108-124
# GFLOP/s after a 0.25 s pause, at 215-223 after 1 s, and at 220-229 after 0.25 s with
# OPENBLAS_NUM_THREADS=1: on one core, then on two. The whole section with 1 s pauses (2026-12-08
# 02:20 UTC) still had points at about half rate, and its sgemm ranged 95-310 GFLOP/s: on that
# machine other guests took cores too, which no pause can help.
PAUSE_S = 1.0


def plain_kernel(q, k, v, mask_bias, num_heads, output_attentions=False, position_bias=None):
    # numbert's attention on its plain kernel (what CPUs without AVX-512 run)
    att = importlib.import_module("numbert.kernels.attention")
    return att.attention_on(False, q, k, v, mask_bias, num_heads, output_attentions, position_bias)


def load_impl(spec):  # "name=module:function" -> (name, callable)
    name, _, target = spec.partition("=")
    module, _, func = target.partition(":")
    return name, getattr(importlib.import_module(module), func)


def environment() -> dict:
    import numba
    import threadpoolctl

    from .report import machine

    blas = [f"{i['internal_api']} {i['version']} ({i.get('architecture', '?')} kernel, {i['num_threads']} threads)"
            for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    return {"machine": machine(), "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "numba_threads": numba.get_num_threads(),
            "numba_threading_layer": numba.threading_layer(), "blas": "; ".join(blas),
            "load_before": os.getloadavg()}


def bench_point(impls, H, nh, B, T, repeats, clock=time.perf_counter, warm_calls=WARM_CALLS, pause=PAUSE_S):
    # -> ({name: [seconds]}, {name: [seconds]}) for each implementation and "sgemm": calls after
    # a pause, then calls back to back
    rng = np.random.default_rng(0)
    y = rng.standard_normal((B, T, 3 * H), dtype=f32)  # [B, T, 3H] as the fused QKV GEMM returns it
    q, k, v = y[..., :H], y[..., H:2 * H], y[..., 2 * H:]  # [B, T, H] strided views
    bias = np.zeros((B, 1, 1, T), f32)  # [B, 1, 1, T] no padding
    x = rng.standard_normal((B * T, H), dtype=f32)  # [B*T, H]
    w = rng.standard_normal((4 * H, H), dtype=f32)  # [4H, H] the intermediate dense weight
    calls = {name: (lambda f=f: f(q, k, v, bias, nh)) for name, f in impls}
    calls["sgemm"] = lambda: x @ w.T  # [B*T, 4H]
    for call in calls.values():  # warm-up (compiles)
        call()
    times = {name: [] for name in calls}
    names = list(calls)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
            # a pause first, as in the grid (bench/run.py): OpenBLAS's workers, still spinning
            # after the sgemm, would otherwise take the cores of the kernel timed next
            time.sleep(pause)
            t = clock()
            calls[name]()
            times[name].append(clock() - t)
    # Back to back, as attention runs inside a forward pass: right after the QKV GEMM, on cores
    # that are busy. After a pause each call pays for a CPU gone cold (caches, branch history,
    # the other core asleep): on the Xeon, MiniLM 1x128 0.73 ms after 0.25 s of sleep, 0.41 ms
    # when another attention call ran just before it, 0.25 ms back to back, on one thread as on
    # two; a fixed cost that weighs more on a short call. (sgemm back to back: OpenBLAS's
    # workers are still spinning, which helps it as it helps nothing else.)
    warm = {name: [] for name in calls}
    for name in names:
        time.sleep(pause)
        calls[name]()
        for _ in range(warm_calls):
            t = clock()
            calls[name]()
            warm[name].append(clock() - t)
    return times, warm


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.attention")
    ap.add_argument("--impl", action="append")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--points", default=DEFAULT_POINTS)
    ap.add_argument("--models", default="bert-base,minilm")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "attention.json"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".json":
        if out.suffix:
            ap.error(f"--out {args.out}: expected a .json path or a folder")
        out = out / "attention.json"
    from threadpoolctl import threadpool_limits

    # numbert's kernels first: importing them selects numbert's Numba threading layer
    # (kernels/jit.py), which must happen before anything starts Numba's pool; jit's
    # set_num_threads then starts it and applies the count to every launch.
    from numbert.kernels import jit

    jit.set_num_threads(args.threads)
    threadpool_limits(args.threads, user_api="blas")
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    impls = [load_impl(s) for s in (args.impl or DEFAULT_IMPLS)]
    points = [tuple(int(n) for n in p.split(":")) for p in args.points.split(",")]
    env = environment()
    started = time.time()
    rows = []
    for model in args.models.split(","):
        H, nh = MODELS[model]
        hs = H // nh
        for B, T in points:
            times, warm = bench_point(impls, H, nh, B, T, args.repeats, clock)
            flops = {name: 4 * B * nh * T * T * hs for name, _ in impls}
            flops["sgemm"] = 2 * B * T * H * 4 * H
            row = {"model": model, "B": B, "T": T, "ms": {}, "gflops": {}, "gflops_best": {}, "ms_warm": {},
                   "gflops_warm": {}}
            for name, ts in times.items():
                med = statistics.median(ts)
                row["ms"][name] = med * 1e3
                row["gflops"][name] = flops[name] / med / 1e9
                row["gflops_best"][name] = flops[name] / min(ts) / 1e9
                row["ms_warm"][name] = statistics.median(warm[name]) * 1e3
                row["gflops_warm"][name] = flops[name] / statistics.median(warm[name]) / 1e9
            rows.append(row)
            print(model, B, T, " ".join(f"{n} {g:.0f}" for n, g in row["gflops"].items()), "GFLOP/s", flush=True)
    env["load_after"] = os.getloadavg()
    result = {"when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "seconds": time.time() - started,
              "repeats": args.repeats, "pause_s": PAUSE_S, "threads": args.threads, "clock": args.clock, "impls": [s for s in (args.impl or DEFAULT_IMPLS)], "env": env, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    md = markdown(result)
    out.with_suffix(".md").write_text(md)
    print(md)


def markdown(result) -> str:
    env, m = result["env"], result["env"]["machine"]
    clock = {"wall": "wall-clock time", "cpu": "the process's CPU time"}[result.get("clock", "wall")]
    return "\n".join([
        f"# Attention kernel vs sgemm ({result['when']})", "",
        f"`python -m bench.attention` in {result['seconds']:.0f} s. Machine: {m['cpu']}, {m['cores']} CPUs, "
        f"{m['simd']}, L2 {m['l2']}, L3 {m['l3']}. {result.get('threads', env['numba_threads'])} threads "
        f"(Numba on its {env.get('numba_threading_layer', '?')} layer, and BLAS), fp32, numpy {env['numpy']}, "
        f"numba {env['numba']}, {env['blas']}. Load average "
        f"before / after: {env['load_before'][0]:.1f} / {env['load_after'][0]:.1f}.", "",
        f"Q, K, V: strided column slices of one [B, T, 3H] array; no padding. Attention GFLOP/s = "
        f"4*B*nh*T*T*hs / time; sgemm = the point's intermediate dense layer, [B*T, H] @ [H, 4H] (x @ W.T). "
        f"Implementations and sgemm interleaved in rotating order, {result['repeats']} timed calls each, "
        f"each after a {result.get('pause_s', 0.25):g} s pause, timed by {clock}.", "",
        "Medians:", "", table(result), "",
        "Best calls (other processes only ever add time, so on a shared machine the best call is the closer "
        "estimate of an idle machine):", "", table(result, "gflops_best"), ""] + ([
        f"Back to back (as inside a forward pass): after the calls above, each implementation and sgemm in turn, "
        f"one call to wake it, then {WARM_CALLS} timed calls in a row; medians:", "",
        table(result, "gflops_warm", "ms_warm"), ""] if all("gflops_warm" in r for r in result["rows"]) else []))


def table(result, key="gflops", ms="ms") -> str:
    names = [s.partition("=")[0] for s in result["impls"]]
    head = "| model | B x T | " + " | ".join(f"{n} GFLOP/s" for n in names) + " | sgemm GFLOP/s | " + \
        " | ".join(f"{n} / sgemm" for n in names) + " | " + " | ".join(f"{n} ms" for n in names) + " |"
    lines = [head, "|" + "---|" * 2 + "---:|" * (3 * len(names) + 1)]
    for r in result["rows"]:
        g, sg = r[key], r[key]["sgemm"]
        lines.append(f"| {r['model']} | {r['B']}x{r['T']} | " + " | ".join(f"{g[n]:.0f}" for n in names) +
                     f" | {sg:.0f} | " + " | ".join(f"{g[n] / sg:.2f}" for n in names) + " | " +
                     " | ".join(f"{r[ms][n]:.2f}" for n in names) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
