"""Cold start of the README main job: `numbert classify "I love cats!" "He hates pineapple pizza."`.

    python -m bench.coldstart [--repeats 3] [--json out.json] [--no-background]

Each repeat, in fresh processes (`python -m numbert classify ...`, the console script's code,
started from a neutral folder, HF_HUB_OFFLINE=1: the default model comes from its installed
offline package, no network in the timing), with backend "auto" as a user gets it:

- cold: the first run, on a fresh, empty NUMBA_CACHE_DIR (what the first run after `pip install`
  pays): it answers on the NumPy reference and starts the background compile (numbert.warmup).
- warm-up: that background process, which outlives the command: wall seconds from the start of
  the cold run until its marker is written (the kernels are then in the cache), and its own CPU
  seconds (read from the marker; it is not our child, so rusage cannot see it).
- warm: the same command again on that cache (now the kernels, loaded from the cache).

--no-background: NUMBERT_BACKGROUND_COMPILE=0, the cold run compiles every kernel it uses in its
own process (numbert before backend="auto"), for the comparison.

The next repeat starts only once the previous warm-up process has exited (killed if it has not
finished in WAIT_S), so runs never overlap. The table gives the median of `--repeats` for wall
seconds and CPU seconds (user + sys of the command's process), which a busy shared machine
inflates far less than wall time.

    python -m bench.coldstart --kernels

where a cold run's time goes when the kernels compile in-process (backend="numba"): one fresh
process with a fresh cache dir runs the same job and prints the CPU seconds of each phase
(imports, load, the classify call) and of each Numba compilation, exclusive of the compilations
nested in it (a kernel's @jit helpers are compiled, and cached, as functions of their own).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

COMMAND = ["classify", "I love cats!", "He hates pineapple pizza."]
WAIT_S = 180.0  # the longest a warm-up may take before it is killed (and the repeat reported as failed)


def _env(cache_dir: str, background: bool = True) -> dict:
    # NUMBERT_BACKGROUND_COMPILE=1: the bench package turns the background compile off for the
    # other benchmarks (bench/__init__.py); a user's first run has it on
    return {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "NUMBERT_BACKGROUND_COMPILE": "1" if background else "0"}


def run_once(cache_dir: str, background: bool = True) -> tuple[float, float]:
    """(wall s, CPU s) of one `numbert classify` process using `cache_dir` as Numba's cache."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "numbert", *COMMAND], env=_env(cache_dir, background), check=True,
                   cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _warmup_files(cache_dir: str, name: str) -> list[str]:
    from numbert import warmup

    return glob.glob(os.path.join(cache_dir, "**", getattr(warmup, name)), recursive=True)


def wait_for_warmup(cache_dir: str, started: float) -> tuple[float, float] | None:
    """(wall s since `started`, its CPU s) once the background warm-up's marker is there; None if it
    failed or took longer than WAIT_S (then it is killed). Returns after the warm-up process has exited."""
    from numbert import warmup

    result = None
    deadline = time.perf_counter() + WAIT_S
    while time.perf_counter() < deadline:
        locks = _warmup_files(cache_dir, "LOCK_FILE")  # made before the warm-up starts: none, none started
        running = any(warmup._lock_held(os.path.dirname(p)) for p in locks)
        markers = _warmup_files(cache_dir, "MARKER_FILE")
        if markers and result is None:
            marker = warmup.read_marker(os.path.dirname(markers[0]))
            if marker is not None:
                result = (time.perf_counter() - started, float(marker.get("cpu_s", float("nan"))))
        if not running:
            return result  # finished (with its marker), ended without one, or never started
        time.sleep(0.05)
    for path in _warmup_files(cache_dir, "LOCK_FILE"):  # too slow: stop it, so that runs do not overlap
        pid = warmup._lock_pid(os.path.dirname(path))
        if pid is not None and warmup._lock_held(os.path.dirname(path)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return None


def measure(repeats: int = 3, background: bool = True) -> dict:
    """background=False: NUMBERT_BACKGROUND_COMPILE=0, the cold run compiles in-process (as before auto)."""
    runs = {"cold": [], "warm-up (background)": [], "warm": []}
    failed = 0
    for i in range(repeats + 1):  # the first round pages the libraries into the OS cache, and is not kept
        cache_dir = tempfile.mkdtemp(prefix="numbert-coldstart-")
        try:
            started = time.perf_counter()
            cold = run_once(cache_dir, background)
            warm_up = wait_for_warmup(cache_dir, started)
            warm = run_once(cache_dir, background)
            wait_for_warmup(cache_dir, time.perf_counter())  # a warm run starts none; if it did, it ends here
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        if i == 0:
            continue
        runs["cold"].append(cold)
        runs["warm"].append(warm)
        if warm_up is None:
            failed += background
        else:
            runs["warm-up (background)"].append(warm_up)
    res = {k: {"wall_s": statistics.median(w for w, _ in v), "cpu_s": statistics.median(c for _, c in v),
               "runs": v} for k, v in runs.items() if v}
    if failed:
        res["warm-up failures"] = failed
    return res


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
model = numbert.load(numbert.hub.DEFAULT_MODEL, backend="numba")  # compiled here, timed
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
    p.add_argument("--no-background", action="store_true",
                   help="NUMBERT_BACKGROUND_COMPILE=0: the cold run compiles the kernels in-process (the old default)")
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
    res = measure(args.repeats, background=not args.no_background)
    how = "in-process compile (NUMBERT_BACKGROUND_COMPILE=0)" if args.no_background else "background compile"
    print(f"numbert {' '.join(COMMAND[:1])} (README main job), backend auto, {how}, median of {args.repeats}, "
          "fresh processes")
    for k, v in res.items():
        if not isinstance(v, dict):
            continue
        runs = ", ".join(f"{w:.2f}" for w, _ in v["runs"])
        print(f"  {k:21s} wall {v['wall_s']:6.2f} s   cpu {v['cpu_s']:6.2f} s   (wall runs: {runs})")
    if res.get("warm-up failures"):
        print(f"  warm-up failed or timed out in {res['warm-up failures']} of {args.repeats} repeats")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
