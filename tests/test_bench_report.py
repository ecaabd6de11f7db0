"""The bench's report logic on small made-up results: targets evaluated from data, rendered in one table.

No timing runs here: bench/targets.py and bench/report.py are fed hand-written section JSON
(the shapes `python -m bench` writes to bench/results/), and each test checks a verdict or a
table line that a wrong comparison, a wrong ratio or a lost section would change.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    """bench.targets and bench.report, imported by path: the repository root stays off sys.path
    (its kernels/ folder would pass for PyPI's `kernels`, see .ci/run), and the environment
    bench/__init__ changes for a benchmark process (OMP_WAIT_POLICY, OpenBLAS's core type) is
    restored, so that no later test or its subprocesses see it."""
    saved = dict(os.environ)
    spec = importlib.util.spec_from_file_location("bench", ROOT / "bench" / "__init__.py",
                                                  submodule_search_locations=[str(ROOT / "bench")])
    package = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = package
    try:
        spec.loader.exec_module(package)
        import bench.report
        import bench.targets

        yield bench
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for name in [n for n in sys.modules if n == "bench" or n.startswith("bench.")]:
            del sys.modules[name]


def point(model, B, T, engine, ms, gflops=100.0):
    return {"model": model, "B": B, "T": T, "engine": engine, "median_ms": ms, "runs_ms": [ms],
            "gflops": gflops, "peak_mib": 1.0}


def sections():
    grid = {"when": "2026-01-01 00:00 UTC", "threads": 2, "sgemm_gflops": [180.0, 200.0], "points": [
        point("bert-base", 1, 16, "numbert-numba", 20.0), point("bert-base", 1, 16, "onnxruntime", 25.0),
        point("bert-base", 1, 16, "torch", 40.0),
        point("bert-base", 8, 128, "numbert-numba", 950.0, gflops=170.0),  # 0.95x ORT: misses 0.9x
        point("bert-base", 8, 128, "onnxruntime", 1000.0), point("bert-base", 8, 128, "torch", 1100.0),
        {"model": "bert-base", "B": 8, "T": 128, "engine": "numbert-numpy", "skipped": True}],
        "e2e_embed": {"sentences": 100, "max_abs_diff": 1e-7, "corpus": {
            "numbert.embed": {"median_s": 1.0, "runs_s": [1.0], "sentences_per_s": 300.0},
            "sentence-transformers": {"median_s": 2.0, "runs_s": [2.0], "sentences_per_s": 100.0}}}}
    threadlayer = {"when": "2026-01-01 00:10 UTC", "rounds": 3, "reps": 7, "threads": 2,
                   "keys": ["bert-base 1x128", "minilm 1x128"], "conditions": ["clean", "torch"], "cells": [
                       {"layer": "default", "ran": "workqueue", "condition": "clean",
                        "ms": {"bert-base 1x128": 100.0, "minilm 1x128": 20.0}},
                       {"layer": "default", "ran": "workqueue", "condition": "torch",
                        "ms": {"bert-base 1x128": 105.0, "minilm 1x128": 30.0}}]}  # 1.05x met, 1.5x missed
    for cell in threadlayer["cells"]:
        clean = threadlayer["cells"][0]["ms"]
        cell["ratio"] = {k: cell["ms"][k] / clean[k] for k in clean}
    attention = {"when": "2026-01-01 00:20 UTC", "threads": 2, "repeats": 7, "env": {"numba_threading_layer": "workqueue"},
                 "impls": ["kernel=numbert.kernels.attention:attention"], "rows": [
                     {"model": "bert-base", "B": 1, "T": 128, "ms": {"kernel": 1.0, "sgemm": 1.0},
                      "gflops": {"kernel": 120.0, "sgemm": 200.0},  # 0.6
                      "gflops_warm": {"kernel": 180.0, "sgemm": 200.0}},  # back to back 0.9
                     {"model": "minilm", "B": 8, "T": 128, "ms": {"kernel": 1.0, "sgemm": 1.0},
                      "gflops": {"kernel": 80.0, "sgemm": 200.0},  # 0.4: the worst point at T=128
                      "gflops_warm": {"kernel": 110.0, "sgemm": 200.0}},  # back to back 0.55, the worst
                     {"model": "bert-base", "B": 1, "T": 512, "ms": {"kernel": 1.0, "sgemm": 1.0},
                      "gflops": {"kernel": 150.0, "sgemm": 200.0}}]}  # 0.75
    coldstart = {"cold": {"wall_s": 6.0, "cpu_s": 5.0, "runs": [[6.0, 5.0]]},
                 "warm": {"wall_s": 1.2, "cpu_s": 1.0, "runs": [[1.2, 1.0]]},
                 "warm-up (background)": {"wall_s": 14.0, "cpu_s": 12.0, "runs": [[14.0, 12.0]]},
                 "warm-up failures": 1, "a_key_added_later": {"anything": 1}}
    return {"grid": grid, "threadlayer": threadlayer, "attention": attention, "coldstart": coldstart}


def by_what(rows):
    return {r["what"]: r for r in rows}


def test_every_target_is_evaluated_with_its_verdict(bench):
    rows = by_what(bench.targets.evaluate(sections()))
    assert rows["BERT-base 1x16: numbert <= ONNX Runtime"]["verdict"] == "met"
    assert rows["BERT-base 1x16: numbert <= ONNX Runtime"]["value"] == pytest.approx(0.8)
    r = rows["BERT-base 8x128: numbert <= 0.9x ONNX Runtime"]
    assert (r["verdict"], r["value"], r["bound"]) == ("missed", pytest.approx(0.95), "<= 0.9")
    assert rows["BERT-base 32x128: numbert <= ONNX Runtime"]["verdict"] == "not measured"
    embed = [r for w, r in rows.items() if w.startswith("MiniLM corpus end to end, embed")]
    assert [(r["verdict"], r["value"]) for r in embed] == [("met", pytest.approx(3.0))]
    assert rows["torch imported first: <= 1.1x the clean process: bert-base 1x128"]["verdict"] == "met"
    r = rows["torch imported first: <= 1.1x the clean process: minilm 1x128"]
    assert (r["verdict"], r["value"]) == ("missed", pytest.approx(1.5))
    r = rows["attention kernel >= 0.5x sgemm, T=128"]
    assert (r["verdict"], r["value"]) == ("missed", pytest.approx(0.4)) and "minilm 8x128" in r["measured"]
    assert rows["attention kernel >= 0.5x sgemm, T=512"]["verdict"] == "met"
    r = rows["attention kernel >= 0.5x sgemm, T=128, calls back to back (as in a forward pass)"]
    assert (r["verdict"], r["value"]) == ("met", pytest.approx(0.55)) and "minilm 8x128" in r["measured"]
    # a section from before the back-to-back calls were timed: not measured, not an error
    assert rows["attention kernel >= 0.5x sgemm, T=512, calls back to back (as in a forward pass)"]["verdict"] == "not measured"
    cold = [r for w, r in rows.items() if w.startswith("README main job, first run")]
    warm = [r for w, r in rows.items() if w.startswith("README main job, warm")]
    assert [(r["verdict"], r["value"]) for r in cold] == [("missed", 6.0)]
    assert [(r["verdict"], r["value"]) for r in warm] == [("met", 1.2)]
    r = rows["BERT-base 8x128: >= 0.85x the sgemm rate"]  # issue 4's, still measured: 170 / max(180, 200)
    assert (r["issue"], r["verdict"], r["value"]) == (4, "met", pytest.approx(0.85))
    # a skipped engine is not a measurement
    assert rows["numbert-numba >= 1.5x numbert-numpy at BERT-base 8x128 (numpy ms / numba ms)"]["verdict"] == "not measured"


def test_a_missing_section_leaves_its_targets_not_measured(bench):
    rows = bench.targets.evaluate({"grid": sections()["grid"]})
    kinds = {t["what"]: t["kind"] for t in bench.targets.load()}
    for r in rows:
        if kinds.get(r["what"]) in ("neighbour_ratio", "attention_sgemm", "coldstart"):
            assert r["verdict"] == "not measured" and r["value"] is None, r
    assert any(r["verdict"] == "met" for r in rows)


def test_targets_are_data_and_an_unknown_kind_is_refused(bench):
    data = json.loads((ROOT / "bench" / "targets.json").read_text())["targets"]
    assert {t["issue"] for t in data} == {4, 9}
    for t in data:
        assert t["kind"] in bench.targets.KINDS and ("max" in t) != ("min" in t), t
    with pytest.raises(ValueError, match="unknown kind 'speed'"):
        bench.targets.evaluate({}, [{"issue": 9, "what": "x", "kind": "speed", "max": 1}])


def test_results_md_shows_the_targets_and_every_section(bench):
    s = sections()
    rows = bench.targets.evaluate(s)
    run = {"when": "2026-01-01 00:30 UTC", "command": "python -m bench --quick", "sections": list(s),
           "seconds": {k: 60.0 for k in s}, "runtime_s": 300.0, "note": ""}
    m = {"cpu": "Test CPU", "cores": "2", "simd": "avx2", "l2": "1 MiB", "l3": "8 MiB"}
    text = bench.report.render(s, rows, run, m, {"python": "3", "blas": "openblas"})
    lines = text.splitlines()
    assert sum(line.startswith("- Machine: Test CPU") for line in lines) == 1  # stated once
    target = next(line for line in lines if line.startswith("| 9 | BERT-base 8x128: numbert <= 0.9x ONNX Runtime"))
    assert target.endswith("| 0.95x | <= 0.9 | **missed** |")
    # the grid's / ORT column: numbert 950 ms over ORT's 1000 ms
    assert "| 8x128 | numbert-numba | 950.0 | 0.86 | 0.95 | 170 | 0.85 | 1 |" in lines
    assert any(line.startswith("| workqueue (numbert's choice) | torch | 105.0 ms (1.05x) | 30.0 ms (1.50x) |")
               for line in lines)
    assert any(line.startswith("| cold | 6.00 | 5.00 |") for line in lines)
    assert any(line.startswith("| warm-up (background) | 14.00 | 12.00 |") for line in lines)
    assert "warm-up failures: 1" in lines
    for title in ("## Targets", "## numbert vs torch vs ONNX Runtime", "## torch in the process",
                  "## Attention kernel vs sgemm", "## Cold start"):
        assert any(line.startswith(title) for line in lines), title


def test_write_renders_from_the_results_folder(bench, tmp_path):
    s = sections()
    (tmp_path / "results").mkdir()
    for name, data in s.items():
        (tmp_path / "results" / f"{name}.json").write_text(json.dumps(data))
    path = bench.report.write(tmp_path)  # a re-render: no run given, every section from an earlier run
    text = path.read_text()
    assert "- Section attention: from an earlier run (2026-01-01 00:20 UTC)" in text
    saved = json.loads((tmp_path / "results" / "targets.json").read_text())
    assert {r["verdict"] for r in saved} == {"met", "missed", "not measured"}
    assert (tmp_path / "results.png").stat().st_size > 0
