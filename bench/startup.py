"""Start-up: seconds from launching `python` to its first classification result.

numbert cold = a fresh NUMBA_CACHE_DIR, so every kernel compiles; warm = the same cache dir
again. torch = `import torch, transformers; pipeline(...)(text)`. Each is a fresh subprocess.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

TEXT = "I love cats!"

NUMBERT = ("import numbert; m = numbert.load({folder!r}); r = numbert.classify({text!r}, model=m); "
           "print(r['label'])")
TORCH = ("import torch, transformers; p = transformers.pipeline('text-classification', model={folder!r}, "
         "device=-1); r = p({text!r}); print(r[0]['label'])")


def _run(code, env) -> float:
    # cwd: not the repository root, which `python -c` would put on sys.path, where kernels/
    # (installed as numbert.kernels) shadows PyPI's `kernels`, which transformers imports
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    return time.perf_counter() - t


def measure(folder, repeats=3) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    numbert_code = NUMBERT.format(folder=str(folder), text=TEXT)
    torch_code = TORCH.format(folder=str(folder), text=TEXT)
    out = {"numbert cold (fresh Numba cache)": [], "numbert warm": [], "torch + transformers": []}
    with tempfile.TemporaryDirectory(prefix="numbert-cache-") as cache:
        _run(torch_code, env)  # page the libraries into the OS cache first: "warm" for both
        cold_env = {**env, "NUMBA_CACHE_DIR": cache}
        out["numbert cold (fresh Numba cache)"].append(_run(numbert_code, cold_env))
        for _ in range(repeats):  # interleaved
            out["numbert warm"].append(_run(numbert_code, cold_env))
            out["torch + transformers"].append(_run(torch_code, env))
    return {k: {"median_s": statistics.median(v), "runs_s": v} for k, v in out.items()}
