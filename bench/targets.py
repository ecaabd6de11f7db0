"""The bench's targets (bench/targets.json) checked against a run's results: one row per target.

`evaluate(sections)` takes the sections' JSON as `python -m bench` keeps them in bench/results/
({"grid": ..., "threadlayer": ..., "attention": ..., "coldstart": ...}; a missing section is
None or absent) and returns, for each target, what was measured, the value the bound applies
to, and the verdict: "met", "missed", or "not measured" (its section did not run).
"""

from __future__ import annotations

import json
from pathlib import Path

PATH = Path(__file__).resolve().parent / "targets.json"
NUMBERT_LAYER = "workqueue"  # the layer kernels/jit.py chooses, for a run that named layers explicitly


def load(path=PATH) -> list[dict]:
    return json.loads(Path(path).read_text())["targets"]


def _bound(t) -> str:
    return f"<= {t['max']:g}" if "max" in t else f">= {t['min']:g}"


def _verdict(t, value) -> str:
    ok = value <= t["max"] if "max" in t else value >= t["min"]
    return "met" if ok else "missed"


def _row(t, measured=None, value=None, unit="x", what=None) -> dict:
    return {"issue": t["issue"], "what": what or t["what"], "bound": _bound(t) + ("" if unit == "x" else f" {unit}"),
            "measured": measured or "", "value": value, "unit": unit,
            "verdict": "not measured" if value is None else _verdict(t, value)}


def _point(grid, model, B, T, engine):
    for r in grid.get("points", []):
        if (r["model"], r["B"], r["T"], r["engine"]) == (model, B, T, engine) and not r.get("skipped"):
            return r
    return None


def grid_ratio(t, s):
    grid = s.get("grid") or {}
    a, b = (_point(grid, t["model"], t["B"], t["T"], e) for e in (t["engine"], t["versus"]))
    if not (a and b):
        return [_row(t)]
    x, y = a["median_ms"], b["median_ms"]
    return [_row(t, f"{t['engine']} {x:.1f} ms, {t['versus']} {y:.1f} ms", x / y)]


def grid_sgemm(t, s):
    grid = s.get("grid") or {}
    a = _point(grid, t["model"], t["B"], t["T"], t["engine"])
    if not (a and grid.get("sgemm_gflops")):
        return [_row(t)]
    sgemm = max(grid["sgemm_gflops"])
    return [_row(t, f"{a['gflops']:.0f} GFLOP/s vs sgemm {sgemm:.0f}", a["gflops"] / sgemm)]


E2E = {"classify": ("e2e", "corpus"), "short": ("e2e", "short"), "embed": ("e2e_embed", "corpus")}


def e2e_ratio(t, s):
    section, part = E2E[t["workload"]]
    figures = ((s.get("grid") or {}).get(section) or {}).get(part) or {}
    if t["a"] not in figures or t["b"] not in figures:
        return [_row(t)]
    x, y = figures[t["a"]][t["key"]], figures[t["b"]][t["key"]]
    unit = {"sentences_per_s": "sentences/s", "median_ms": "ms"}[t["key"]]
    return [_row(t, f"{x:.1f} vs {y:.1f} {unit}", x / y)]


def startup_ratio(t, s):
    st = (s.get("grid") or {}).get("startup") or {}
    if t["a"] not in st or t["b"] not in st:
        return [_row(t)]
    x, y = st[t["a"]]["median_s"], st[t["b"]]["median_s"]
    return [_row(t, f"{x:.2f} s vs {y:.2f} s", x / y)]


def neighbour_ratio(t, s):
    """One row per point of the section: the condition's median / the clean process's."""
    tl = s.get("threadlayer") or {}
    cells = tl.get("cells", [])
    layer = "default" if any(c["layer"] == "default" for c in cells) else NUMBERT_LAYER
    cell = next((c for c in cells if c["layer"] == layer and c["condition"] == t["condition"]), None)
    clean = next((c for c in cells if c["layer"] == layer and c["condition"] == "clean"), None)
    if not (cell and clean):
        return [_row(t)]
    return [_row(t, f"{cell['ms'][k]:.1f} ms vs {clean['ms'][k]:.1f} ms clean", cell["ms"][k] / clean["ms"][k],
                 what=f"{t['what']}: {k}") for k in tl["keys"] if k in cell["ms"] and k in clean["ms"]]


def attention_sgemm(t, s):
    """The worst point at T: every model and batch the section measured must reach the bound."""
    key = t.get("stat", "gflops")  # gflops: calls after a pause; gflops_warm: calls back to back
    rows = [r for r in (s.get("attention") or {}).get("rows", []) if r["T"] == t["T"] and t["impl"] in r.get(key, {})]
    if not rows:
        return [_row(t)]
    worst = min(rows, key=lambda r: r[key][t["impl"]] / r[key]["sgemm"])
    g, sg = worst[key][t["impl"]], worst[key]["sgemm"]
    best = max(r[key][t["impl"]] / r[key]["sgemm"] for r in rows)
    return [_row(t, f"worst of {len(rows)} points: {worst['model']} {worst['B']}x{worst['T']}, {g:.0f} vs "
                    f"{sg:.0f} GFLOP/s (best point {best:.2f}x)", g / sg)]


def coldstart(t, s):
    run = ((s.get("coldstart") or {}).get(t["run"])) or {}
    if t["stat"] not in run:
        return [_row(t, unit="s")]
    v = run[t["stat"]]
    cpu = f", CPU {run['cpu_s']:.2f} s" if "cpu_s" in run else ""
    return [_row(t, f"{v:.2f} s wall{cpu}", v, unit="s")]


KINDS = {f.__name__: f for f in (grid_ratio, grid_sgemm, e2e_ratio, startup_ratio, neighbour_ratio,
                                  attention_sgemm, coldstart)}


def evaluate(sections: dict, targets=None) -> list[dict]:
    rows = []
    for t in load() if targets is None else targets:
        if t["kind"] not in KINDS:
            raise ValueError(f"target {t['what']!r}: unknown kind {t['kind']!r} (known: {', '.join(KINDS)})")
        rows += KINDS[t["kind"]](t, sections)
    return rows


def table(rows) -> str:
    """Markdown: one line per target, issue 9's first."""
    lines = ["| issue | target | measured | value | bound | |", "|---|---|---|---:|---|---|"]
    for r in sorted(rows, key=lambda r: -r["issue"]):
        value = "" if r["value"] is None else (f"{r['value']:.2f}x" if r["unit"] == "x" else f"{r['value']:.2f} {r['unit']}")
        verdict = {"met": "met", "missed": "**missed**"}.get(r["verdict"], r["verdict"])
        lines.append(f"| {r['issue']} | {r['what']} | {r['measured']} | {value} | {r['bound']} | {verdict} |")
    return "\n".join(lines)
