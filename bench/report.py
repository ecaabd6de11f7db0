"""<out>/results/*.json -> <out>/results.md (machine, targets, each section's tables) and results.png.

    python -m bench.report [OUT]      # re-render OUT/results.md from OUT/results/ (default: bench/)
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

from . import targets

ENGINES = ("numbert-numba", "numbert-numpy", "torch", "onnxruntime")


def machine() -> dict:
    info = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            info[k.strip()] = v.strip()
    except OSError:
        pass
    flags = info.get("Flags", "").split()
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    cpu = info.get("Model name", platform.processor())
    if "CPU family" in info and "Model" in info:
        cpu += f" (family {info['CPU family']}, model {info['Model']})"
    return {"cpu": cpu, "cores": info.get("CPU(s)", "?"),
            "simd": " ".join(simd), "l2": info.get("L2 cache", "?"), "l3": info.get("L3 cache", "?")}


def versions() -> dict:
    import numba
    import numpy
    import threadpoolctl

    v = {"python": platform.python_version(), "numpy": numpy.__version__, "numba": numba.__version__}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("torch", "transformers", "onnxruntime", "sentence-transformers"):
        try:  # the installed version, without importing the package
            v[dist] = version(dist)
        except PackageNotFoundError:
            v[dist] = "absent"
    blas = [f"{i['internal_api']} {i['version']} ({i.get('architecture', '?')} kernel, {i['num_threads']} threads)"
            for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    v["blas"] = "; ".join(blas)
    return v


def _point(results, model, B, T, engine):
    for r in results["points"]:
        if (r["model"], r["B"], r["T"], r["engine"]) == (model, B, T, engine):
            return r
    return None


def load_sections(out: Path) -> dict:
    """{section: its JSON} for every section file present in <out>/results/."""
    from .run import SECTIONS

    found = {}
    for name in SECTIONS:
        path = Path(out) / "results" / f"{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


def write(out: Path, run: dict | None = None) -> Path:
    """Render <out>/results.md (and results.png) from <out>/results/*.json; also writes the
    evaluated targets to <out>/results/targets.json. `run`: the run that just finished (its
    command, sections and times); None re-renders (python -m bench.report) with the last run's,
    <out>/results/run.json."""
    out = Path(out)
    sections = load_sections(out)
    if run is None and (out / "results" / "run.json").is_file():  # a re-render: the last run's header
        run = json.loads((out / "results" / "run.json").read_text())
    rows = targets.evaluate(sections)
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "results" / "targets.json").write_text(json.dumps(rows, indent=1))
    text = render(sections, rows, run, machine(), versions())
    (out / "results.md").write_text(text)
    if sections.get("grid", {}).get("points"):
        plot(sections["grid"], out / "results.png")
    return out / "results.md"


def render(sections: dict, rows: list, run: dict | None, m: dict, v: dict) -> str:
    """results.md: the machine once, the targets, then each section present."""
    run = run or {}
    fresh = set(run.get("sections", []))
    lines = ["# numbert benchmark results", ""]
    if run:
        lines += [f"Run {run['when']} by `{run['command']}` in {run['runtime_s'] / 60:.1f} min "
                  f"(sections: {', '.join(f'{k} {t / 60:.1f} min' for k, t in run['seconds'].items()) or 'none'}).", ""]
        if run.get("note"):
            lines += [run["note"], ""]
        if run.get("failed"):
            lines += [f"**Sections that failed in this run: {', '.join(run['failed'])}** (their figures below, if "
                      "any, are an earlier run's).", ""]
    threads = {d.get("threads") for d in [*sections.values(), run] if isinstance(d, dict) and d.get("threads")}
    lines += [f"- Machine: {m['cpu']}, {m['cores']} CPUs, {m['simd']}, L2 {m['l2']}, L3 {m['l3']}",
              f"- Threads: {', '.join(map(str, sorted(threads))) or '?'} for every engine and library "
              "(numbert: Numba + BLAS; torch.set_num_threads; ORT intra-op; MKL)",
              "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if k != "blas"),
              f"- BLAS: {v['blas']}"]
    for name in sections:
        if name not in fresh:
            lines.append(f"- Section {name}: from an earlier run ({sections[name].get('when', 'date unknown')}), "
                         "its JSON kept in results/")
    lines += ["", "## Targets", "",
              "Each target of [targets.json](targets.json) (issue 9's, and issue 4's still measured), evaluated "
              "by bench/targets.py against this folder's results/ (also written to results/targets.json). "
              "value = the quantity the bound applies to: a ratio (x) or seconds.", "",
              targets.table(rows), ""]
    for name, render_section in (("grid", _grid), ("threadlayer", _threadlayer), ("attention", _attention),
                                 ("gemm", _gemm), ("coldstart", _coldstart)):
        if name in sections:
            lines += render_section(sections[name])
    return "\n".join(lines)


def _grid(grid) -> list[str]:
    sgemm = grid["sgemm_gflops"]
    lines = ["## numbert vs torch vs ONNX Runtime (results/grid.json)", "",
             f"In one process ({grid['when']}): OMP_WAIT_POLICY={grid.get('omp_wait_policy', '?')} (bench/__init__.py "
             "says why). sgemm (2048x768 @ 768x3072, fp32) measured during the run: "
             + ", ".join(f"{g:.0f}" for g in sgemm) + f" GFLOP/s (max {max(sgemm):.0f} is the reference below). "
             "torch: transformers BertModel, fp32, eager (its default SDPA attention), inference_mode. "
             "ONNX Runtime: the same model via torch.onnx.export (opset 17), ORT_ENABLE_ALL, CPU EP. "
             f"Each point: one warm-up call per engine, then {_repeats(grid)} timed calls, "
             "engines interleaved in rotating order; medians. / torch and / ORT: the engine's median over theirs. "
             "GFLOP/s counts the GEMMs and the two attention products; `gemm-floor` is the model's dense layers "
             "alone through the same sgemm. Peak = extra RSS during one call, sampled every ms after malloc_trim "
             "(ONNX Runtime keeps its own memory arena, so its calls show ~0).", ""]
    for model in dict.fromkeys(r["model"] for r in grid["points"]):
        lines += [f"### {model}", "",
                  "| B x T | engine | median ms | / torch | / ORT | GFLOP/s | / sgemm | peak MiB |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for B, T in dict.fromkeys((r["B"], r["T"]) for r in grid["points"] if r["model"] == model):
            ref = {e: _point(grid, model, B, T, e) for e in ("torch", "onnxruntime")}
            for e in ENGINES + ("gemm-floor",):
                r = _point(grid, model, B, T, e)
                if r is None:
                    continue
                if r.get("skipped"):
                    lines.append(f"| {B}x{T} | {e} | skipped (too slow) | | | | | |")
                    continue
                ratios = [f"{r['median_ms'] / x['median_ms']:.2f}" if x and not x.get("skipped") else ""
                          for x in ref.values()]
                lines.append(f"| {B}x{T} | {e} | {r['median_ms']:.1f} | {ratios[0]} | {ratios[1]} | "
                             f"{r['gflops']:.0f} | {r['gflops'] / max(sgemm):.2f} | {r['peak_mib']:.0f} |")
        lines.append("")
    e2e = grid.get("e2e")
    if e2e:
        lines += ["### End to end: classify (all-MiniLM-L6-v2 + a seeded 2-label head)", "",
                  f"{e2e['sentences']} sentences from the Python stdlib's docstrings ({e2e['tokens_median']:.0f} tokens "
                  f"median, {e2e['tokens_max']} max), tokenization included, batch_size=32 for both: numbert.classify "
                  "(sorts by length) vs transformers' pipeline('text-classification') on torch (keeps input order). "
                  f"Labels agree on {e2e['label_agreement']:.1%} of sentences (max score difference "
                  f"{e2e['max_score_diff']:.1e}).", "",
                  "| engine | corpus s | sentences/s | one short sentence ms |", "|---|---:|---:|---:|"]
        for k in e2e["corpus"]:
            c, sh = e2e["corpus"][k], e2e["short"][k]
            lines.append(f"| {k} | {c['median_s']:.2f} | {c['sentences_per_s']:.0f} | {sh['median_ms']:.1f} |")
        lines.append("")
    emb = grid.get("e2e_embed")
    if emb:
        lines += ["### End to end: embed (all-MiniLM-L6-v2)", "",
                  f"The same {emb['sentences']} sentences, tokenization included, batch_size=32 for both: "
                  "numbert.embed vs sentence-transformers' SentenceTransformer(folder).encode (torch); both sort by "
                  f"length, mean-pool and normalize. Max abs difference of the embeddings {emb['max_abs_diff']:.1e}.", "",
                  "| engine | corpus s | sentences/s |", "|---|---:|---:|"]
        for k, c in emb["corpus"].items():
            lines.append(f"| {k} | {c['median_s']:.2f} | {c['sentences_per_s']:.0f} |")
        lines.append("")
    st = grid.get("startup")
    if st:
        lines += ["### Start-up: a fresh `python -c` to its first classify result", "",
                  "| process | median s | runs |", "|---|---:|---|"]
        for k, val in st.items():
            lines.append(f"| {k} | {val['median_s']:.2f} | {', '.join(f'{x:.2f}' for x in val['runs_s'])} |")
        lines.append("")
    lines += ["![numbert vs torch vs ONNX Runtime](results.png)", ""]
    return lines


def _repeats(grid) -> str:
    args = grid.get("args", {})
    if args.get("repeats"):
        return str(args["repeats"])
    return "3" if args.get("quick") else "5 (3 when a call takes > 2 s)"


def _threadlayer(tl) -> list[str]:
    from .threadlayer import table

    return ["## torch in the process (results/threadlayer.json)", "",
            f"numbert alone in fresh processes ({tl['when']}), one per condition, `python -m bench.threadlayer`'s "
            "code: clean = nothing imported before numbert; torch = `import torch` first; torch_after = `import "
            f"torch` after numbert ran; threads={tl['threads']} = `numbert.load(..., threads={tl['threads']})`. "
            f"Each cell: the median over {tl['rounds']} rounds (conditions round-robin, rotating) of the median of "
            f"{tl['reps']} interleaved calls; (x) = ratio to the clean process. No OMP_WAIT_POLICY in the workers' "
            "environment (a user's process).", "", table(tl), ""]


def _attention(att) -> list[str]:
    from .attention import table

    return ["## Attention kernel vs sgemm (results/attention.json, [attention.md](results/attention.md))", "",
            f"`python -m bench.attention` ({att['when']}, {att['threads']} threads, {att['repeats']} calls each, "
            f"Numba layer {att['env'].get('numba_threading_layer', '?')}): the attention kernel and the point's "
            "intermediate dense layer sgemm ([B*T, H] @ [H, 4H]), interleaved in one process; no padding; "
            "attention GFLOP/s = 4*B*nh*T*T*hs / time. Medians:", "", table(att), ""]


def _gemm(g) -> list[str]:
    from .gemm import LIBS, summary, table

    libs = [f"- {n}: {g['libs'][n]}" for n in LIBS if n in g["libs"]]
    return ["## GEMM libraries on the dense layers' shapes (results/gemm.json, [gemm.md](results/gemm.md))", "",
            f"`python -m bench.gemm` ({g['when']}, {g['threads']} threads for every library, fp32, libraries "
            "interleaved in rotating order; GFLOP/s = 2*M*in*out / median time; gemm.md also has the best "
            "calls).", "", *libs, "", table(g), "", summary(g), ""]


def _coldstart(cs) -> list[str]:
    rows = [(k, v) for k, v in cs.items() if isinstance(v, dict) and "wall_s" in v]
    others = [(k, v) for k, v in cs.items() if isinstance(v, (int, float, str)) and k not in ("when", "section_seconds")]
    lines = ["## Cold start of the README main job (results/coldstart.json)", "",
             f"`python -m bench.coldstart` ({cs.get('when', '?')}): `numbert classify \"I love cats!\" \"He hates "
             "pineapple pizza.\"` in fresh processes, as a user runs it; cold = its first run on an empty "
             "NUMBA_CACHE_DIR (the first run after `pip install`), warm = the same command once the cache is filled "
             "(bench/coldstart.py says what each row is). Medians; CPU s = user + sys of the row's process.", "",
             "| run | wall s | CPU s | wall s of each run |", "|---|---:|---:|---|"]
    for k, v in rows:
        runs = ", ".join(f"{r[0]:.2f}" if isinstance(r, (list, tuple)) else f"{r:.2f}" for r in v.get("runs", []))
        cpu = f"{v['cpu_s']:.2f}" if "cpu_s" in v else ""
        lines.append(f"| {k} | {v['wall_s']:.2f} | {cpu} | {runs} |")
    if others:
        lines += ["", "; ".join(f"{k}: {v}" for k, v in others)]
    return lines + [""]


def plot(results, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in results["points"]))
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
    colors = {"numbert-numba": "tab:green", "numbert-numpy": "tab:olive", "torch": "tab:red",
              "onnxruntime": "tab:blue", "gemm-floor": "tab:gray"}
    for ax, model in zip(axes[0], models):
        pts = list(dict.fromkeys((r["B"], r["T"]) for r in results["points"] if r["model"] == model))
        names = [e for e in ENGINES + ("gemm-floor",) if any(r["engine"] == e for r in results["points"])]
        width = 0.8 / len(names)
        for i, e in enumerate(names):
            vals = []
            for B, T in pts:
                r, t = _point(results, model, B, T, e), _point(results, model, B, T, "torch")
                ok = r and not r.get("skipped") and t and not t.get("skipped")
                vals.append(r["median_ms"] / t["median_ms"] if ok else 0.0)
            ax.bar([j + i * width for j in range(len(pts))], vals, width, label=e, color=colors.get(e))
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(pts))], [f"{B}x{T}" for B, T in pts])
        ax.set_ylabel("time / torch time (lower is faster)")
        ax.set_title(f"{model}, {results['threads']} threads")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent))
