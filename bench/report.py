"""results.json -> results.md (tables, targets, machine) and results.png."""

from __future__ import annotations

import platform
import statistics
import subprocess
from datetime import datetime, timezone
from pathlib import Path

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
    return {"cpu": info.get("Model name", platform.processor()), "cores": info.get("CPU(s)", "?"),
            "simd": " ".join(simd), "l2": info.get("L2 cache", "?"), "l3": info.get("L3 cache", "?")}


def versions() -> dict:
    import numba
    import numpy
    import threadpoolctl

    v = {"python": platform.python_version(), "numpy": numpy.__version__, "numba": numba.__version__}
    for mod in ("torch", "transformers", "onnxruntime"):
        try:
            v[mod] = __import__(mod).__version__
        except ImportError:
            v[mod] = "absent"
    blas = [f"{i['internal_api']} {i['version']} ({i.get('architecture', '?')} kernel, {i['num_threads']} threads)"
            for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    v["blas"] = "; ".join(blas)
    return v


def _point(results, model, B, T, engine):
    for r in results["points"]:
        if (r["model"], r["B"], r["T"], r["engine"]) == (model, B, T, engine):
            return r
    return None


def targets(results) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each target of issue 4 that this run measured."""
    sgemm = max(results["sgemm_gflops"])
    out = []

    def ms(model, B, T, e):
        r = _point(results, model, B, T, e)
        return None if r is None or r.get("skipped") else r["median_ms"]

    for B in (8, 32):
        n, o = ms("bert-base", B, 128, "numbert-numba"), ms("bert-base", B, 128, "onnxruntime")
        if n and o:
            out.append((f"BERT-base {B}x128: numbert <= ONNX Runtime", f"{n:.0f} ms vs {o:.0f} ms ({n / o:.2f}x)",
                        "met" if n <= o else "missed"))
        r = _point(results, "bert-base", B, 128, "numbert-numba")
        floor = ms("bert-base", B, 128, "gemm-floor")
        if r and not r.get("skipped"):
            frac = r["gflops"] / sgemm
            vs_floor = f"; gemm-floor / numbert = {floor / r['median_ms']:.2f}" if floor else ""
            out.append((f"BERT-base {B}x128: >= 0.85 x sgemm rate",
                        f"{r['gflops']:.0f} GFLOP/s = {frac:.2f} x {sgemm:.0f}{vs_floor}",
                        "met" if frac >= 0.85 else "missed"))
    n, t = ms("bert-base", 1, 128, "numbert-numba"), ms("bert-base", 1, 128, "torch")
    if n and t:
        out.append(("BERT-base 1x128: <= 0.8 x torch", f"{n:.1f} ms vs {t:.1f} ms ({n / t:.2f}x)",
                    "met" if n <= 0.8 * t else "missed"))
    e2e = results.get("e2e")
    if e2e:
        a, b = e2e["short"]["numbert.classify"]["median_ms"], e2e["short"]["torch pipeline"]["median_ms"]
        out.append(("one short sentence end to end: <= torch", f"{a:.1f} ms vs {b:.1f} ms ({a / b:.2f}x)",
                    "met" if a <= b else "missed"))
        a, b = e2e["corpus"]["numbert.classify"]["sentences_per_s"], e2e["corpus"]["torch pipeline"]["sentences_per_s"]
        out.append(("corpus end to end: >= 2x torch throughput", f"{a:.0f} vs {b:.0f} sentences/s ({a / b:.2f}x)",
                    "met" if a >= 2 * b else "missed"))
    st = results.get("startup")
    if st:
        a, b = st["numbert warm"]["median_s"], st["torch + transformers"]["median_s"]
        out.append(("warm start to first result: < torch", f"{a:.2f} s vs {b:.2f} s", "met" if a < b else "missed"))
    n, p = ms("bert-base", 8, 128, "numbert-numba"), ms("bert-base", 8, 128, "numbert-numpy")
    if n and p:
        out.append(("numba >= 1.5x numpy at 8x128", f"{p / n:.2f}x ({n:.0f} vs {p:.0f} ms)",
                    "met" if p / n >= 1.5 else "missed"))
    return out


def write(results, out: Path, note: str = ""):
    m, v = machine(), versions()
    sgemm = results["sgemm_gflops"]
    lines = ["# numbert benchmark results", "",
             f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by "
             f"`{' '.join(filter(None, ['python -m bench', _argstr(results['args'])]))}` "
             f"in {results['runtime_s'] / 60:.1f} min.", ""]
    if note:
        lines += [note, ""]
    lines += [f"- Machine: {m['cpu']}, {m['cores']} CPUs, {m['simd']}, L2 {m['l2']}, L3 {m['l3']}",
              f"- Threads: {results['threads']} for every engine (numbert: Numba + BLAS; torch.set_num_threads; ORT intra-op)",
              f"- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if k != "blas"),
              f"- BLAS: {v['blas']}",
              f"- sgemm (2048x768 @ 768x3072, fp32) measured during the run: "
              + ", ".join(f"{g:.0f}" for g in sgemm) + f" GFLOP/s (max {max(sgemm):.0f} is the reference below)",
              "- torch: transformers BertModel, fp32, eager (its default SDPA attention), inference_mode. "
              "ONNX Runtime: the same model via torch.onnx.export (opset 17), ORT_ENABLE_ALL, CPU EP.",
              "- Each point: one warm-up call per engine, then 5 timed calls (3 when a call takes > 2 s), "
              "engines interleaved in rotating order; medians. GFLOP/s counts the GEMMs and the two attention "
              "products; `gemm-floor` is the model's dense layers alone through the same sgemm. Peak = extra RSS "
              "during one call, sampled every ms after malloc_trim (ONNX Runtime keeps its own memory arena, "
              "so its calls show ~0).", ""]
    lines += ["## Targets (issue 4)", "", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in targets(results)]
    lines += [""]
    for model in dict.fromkeys(r["model"] for r in results["points"]):
        lines += [f"## {model}", "", "| B x T | engine | median ms | / torch | GFLOP/s | / sgemm | peak MiB |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for B, T in dict.fromkeys((r["B"], r["T"]) for r in results["points"] if r["model"] == model):
            torch_r = _point(results, model, B, T, "torch")
            for e in ENGINES + ("gemm-floor",):
                r = _point(results, model, B, T, e)
                if r is None:
                    continue
                if r.get("skipped"):
                    lines.append(f"| {B}x{T} | {e} | skipped (too slow) | | | | |")
                    continue
                ratio = f"{r['median_ms'] / torch_r['median_ms']:.2f}" if torch_r and not torch_r.get("skipped") else ""
                lines.append(f"| {B}x{T} | {e} | {r['median_ms']:.1f} | {ratio} | {r['gflops']:.0f} | "
                             f"{r['gflops'] / max(sgemm):.2f} | {r['peak_mib']:.0f} |")
        lines.append("")
    e2e = results.get("e2e")
    if e2e:
        lines += ["## End to end: classify (all-MiniLM-L6-v2 + a seeded 2-label head)", "",
                  f"{e2e['sentences']} sentences from the Python stdlib's docstrings ({e2e['tokens_median']:.0f} tokens "
                  f"median, {e2e['tokens_max']} max), tokenization included, batch_size=32 for both "
                  "(numbert.classify sorts by length; the pipeline keeps input order). "
                  f"Labels agree on {e2e['label_agreement']:.1%} of sentences (max score difference "
                  f"{e2e['max_score_diff']:.1e}).", "",
                  "| engine | corpus s | sentences/s | one short sentence ms |", "|---|---:|---:|---:|"]
        for k in e2e["corpus"]:
            c, s = e2e["corpus"][k], e2e["short"][k]
            lines.append(f"| {k} | {c['median_s']:.2f} | {c['sentences_per_s']:.0f} | {s['median_ms']:.1f} |")
        lines.append("")
    st = results.get("startup")
    if st:
        lines += ["## Start-up: a fresh `python -c` to its first classify result", "",
                  "| process | median s | runs |", "|---|---:|---|"]
        for k, val in st.items():
            lines.append(f"| {k} | {val['median_s']:.2f} | {', '.join(f'{x:.2f}' for x in val['runs_s'])} |")
        lines.append("")
    lines += ["![numbert vs torch vs ONNX Runtime](results.png)", ""]
    (out / "results.md").write_text("\n".join(lines))
    plot(results, out / "results.png")


def _argstr(args):
    parts = []
    for k, val in args.items():
        if k in ("out", "note") or val in (None, False, "") or (k == "models" and val == "bert-base,minilm"):
            continue
        if k == "threads":
            continue
        parts.append(f"--{k.replace('_', '-')}" + ("" if val is True else f" {val}"))
    return " ".join(parts)


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
