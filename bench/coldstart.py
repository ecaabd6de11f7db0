"""Cold start of the README's main job: `numbert classify "I love cats!" "He hates pineapple pizza."`.

    python -m bench.coldstart [--repeats 3] [--json out.json]

cold = a fresh, empty NUMBA_CACHE_DIR for each run (what the first run after `pip install`
pays: every kernel it uses compiles); warm = the same command again with a cache dir that a
previous run filled. Each run is a fresh process (`python -m numbert classify ...`, the
console script's code) started from a neutral folder, HF_HUB_OFFLINE=1 (the default model
comes from its installed offline package; no network in the timing). Cold and warm runs are
interleaved; the table gives the median of `--repeats` for wall-clock seconds and for the
child's CPU seconds (user + sys), which a busy shared machine inflates far less than wall time.

    python -m bench.coldstart --kernels

where a cold run's time goes: one fresh process with a fresh cache dir runs the same job
in-process and prints the CPU seconds of each phase (imports, load, the classify call) and
of each Numba compilation, exclusive of the compilations nested in it (a kernel's @jit
helpers are compiled, and cached, as functions of their own).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

COMMAND = ["classify", "I love cats!", "He hates pineapple pizza."]


def run_once(cache_dir: str) -> tuple[float, float]:
    """(wall s, CPU s) of one `numbert classify` process using `cache_dir` as Numba's cache."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "numbert", *COMMAND], env=env, check=True, cwd=tempfile.gettempdir(),
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(repeats: int = 3) -> dict:
    runs = {"cold": [], "warm": []}
    run_once(tempfile.mkdtemp(prefix="numbert-coldstart-"))  # page the libraries into the OS cache
    with tempfile.TemporaryDirectory(prefix="numbert-coldstart-warm-") as warm_dir:
        run_once(warm_dir)  # fills the warm cache
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="numbert-coldstart-cold-") as cold_dir:
                runs["cold"].append(run_once(cold_dir))
            runs["warm"].append(run_once(warm_dir))
    return {k: {"wall_s": statistics.median(w for w, _ in v), "cpu_s": statistics.median(c for _, c in v),
                "runs": v} for k, v in runs.items()}


_PROFILE = r"""
import json, sys, time
cpu = time.process_time
t0 = cpu()
import numba
from numba.core import event

class Compiles(event.Listener):  # CPU seconds per compiled function, nested compiles subtracted
    def __init__(self):
        self.stack, self.rows = [], {}
    def on_start(self, ev):
        self.stack.append([cpu(), 0.0])
    def on_end(self, ev):
        start, nested = self.stack.pop()
        total = cpu() - start
        if self.stack:
            self.stack[-1][1] += total
        d = ev.data["dispatcher"]
        name = f"{d.py_func.__module__}.{d.py_func.__qualname__}"
        self.rows[name] = self.rows.get(name, 0.0) + total - nested

listener = Compiles()
event.register("numba:compile", listener)
t1 = cpu()
import numbert
from numbert import kernels
t2 = cpu()
model = numbert.load(numbert.hub.DEFAULT_MODEL)
t3 = cpu()
numbert.classify(sys.argv[1:], model)
t4 = cpu()
print(json.dumps({"phases": {"import numba": t1 - t0, "import numbert + kernels": t2 - t1, "load": t3 - t2,
                             "classify (compiles included)": t4 - t3}, "compiles": listener.rows}))
"""


def kernel_breakdown() -> dict:
    with tempfile.TemporaryDirectory(prefix="numbert-coldstart-kernels-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        out = subprocess.run([sys.executable, "-c", _PROFILE, *COMMAND[1:]], env=env, check=True, text=True,
                             capture_output=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the numbers to this file")
    p.add_argument("--kernels", action="store_true", help="where a cold run's CPU time goes, per phase and kernel")
    args = p.parse_args(argv)
    if args.kernels:
        res = kernel_breakdown()
        print("cold run, CPU seconds per phase:")
        for k, v in res["phases"].items():
            print(f"  {v:6.2f}  {k}")
        print(f"Numba compilations ({sum(res['compiles'].values()):.2f} s), each without the ones nested in it:")
        for k, v in sorted(res["compiles"].items(), key=lambda kv: -kv[1]):
            print(f"  {v:6.2f}  {k}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        return
    res = measure(args.repeats)
    print(f"numbert {' '.join(COMMAND[:1])} (README main job), median of {args.repeats}, fresh processes")
    for k, v in res.items():
        runs = ", ".join(f"{w:.2f}" for w, _ in v["runs"])
        print(f"  {k:5s} wall {v['wall_s']:6.2f} s   cpu {v['cpu_s']:6.2f} s   (wall runs: {runs})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
