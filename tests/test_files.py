"""numbert.files: corpora streamed from Parquet / JSON lines / CSV / text to Parquet / JSON lines.

Every result is held to numbert.embed / numbert.classify on the same texts (<= 1e-5: only the
batches differ); resume is proved by SIGKILL-ing a run and finishing it; memory by peak RSS on
a 200k-row Parquet file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import numbert  # noqa: E402
from numbert.files import Reader, batches, matrix_of, run_file  # noqa: E402

WORDS = np.array("the quick brown fox jumps over a lazy dog beautiful is better than ugly explicit implicit "
                 "simple complex flat nested sparse dense readability counts café naïve 東京".split())
ENV = {**os.environ, "NUMBERT_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}  # 1 thread: the machine may be shared


def make_texts(n, seed=0, lo=2, hi=12):
    rng = np.random.default_rng(seed)
    return [" ".join(WORDS[rng.integers(0, len(WORDS), k)]) for k in rng.integers(lo, hi, n)]


@pytest.fixture(scope="module")
def tiny(checkpoint_factory):
    return checkpoint_factory()


@pytest.fixture(scope="module")
def tiny_cls(checkpoint_factory):
    return checkpoint_factory(num_labels=3, id2label={0: "red", 1: "green", 2: "blue"})


@pytest.fixture(scope="module")
def model(tiny):
    return numbert.load(tiny, threads=1)


def write_input(path, fmt, texts, ids=None):
    ids = np.arange(len(texts)) if ids is None else ids
    table = pa.table({"id": ids, "body": texts})
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=700)  # several row groups, not aligned with batches
    elif fmt == "csv":
        pacsv.write_csv(table, path)
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for i, t in zip(ids, texts):
                f.write(json.dumps({"id": int(i), "body": t}, ensure_ascii=False) + "\n")
    else:
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return path


def read_output(path):
    if path.suffix == ".parquet":
        return pq.read_table(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    table = pa.Table.from_pylist(rows)
    if "embedding" in table.column_names:
        D = len(next(r["embedding"] for r in rows if r["embedding"] is not None))
        vecs = np.array([r["embedding"] if r["embedding"] is not None else [np.nan] * D for r in rows], np.float32)
        table = table.set_column(table.column_names.index("embedding"), "embedding",
                                 pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), D))
    return table


# ----------------------------------------------------------------------------- results and formats

@pytest.mark.parametrize("fmt_in", ["parquet", "jsonl", "csv", "txt"])
@pytest.mark.parametrize("fmt_out", ["parquet", "jsonl"])
def test_embed_every_format_equals_numbert_embed(tmp_path, model, fmt_in, fmt_out):
    texts = make_texts(2500, seed=1)
    src = write_input(tmp_path / f"in.{fmt_in}", fmt_in, texts)
    keep = [] if fmt_in == "txt" else ["id"]
    column = "text" if fmt_in == "txt" else "body"
    result = run_file("embed", src, tmp_path / f"out.{fmt_out}", model=model, column=column, keep=keep,
                      rows_per_batch=1000, progress=False)
    assert result.rows == 2500 and result.errors == 0
    out = read_output(tmp_path / f"out.{fmt_out}")
    assert out.column_names == keep + ["embedding"]
    if fmt_out == "parquet":
        assert out.schema.field("embedding").type == pa.list_(pa.float32(), 32)  # fixed_size_list<float32>[H]
    if keep:
        assert out.column("id").to_pylist() == list(range(2500))  # every row once, in input order
    ref = numbert.embed(texts, model, progress=False)  # [N, H]
    assert np.abs(matrix_of(out.column("embedding")) - ref).max() <= 1e-5
    assert not (tmp_path / f"out.{fmt_out}.partial").exists()


def test_classify_top1_and_topk_equal_numbert_classify(tmp_path, tiny_cls):
    texts = make_texts(900, seed=2)
    src = write_input(tmp_path / "in.parquet", "parquet", texts)
    m = numbert.load(tiny_cls, threads=1)
    run_file("classify", src, tmp_path / "top1.parquet", model=m, column="body", keep=["id"], rows_per_batch=400)
    run_file("classify", src, tmp_path / "top2.jsonl", model=m, column="body", top_k=2, rows_per_batch=400)
    top1, top2 = pq.read_table(tmp_path / "top1.parquet"), read_output(tmp_path / "top2.jsonl")
    ref1, ref2 = numbert.classify(texts, m), numbert.classify(texts, m, top_k=2)
    assert top1.column_names == ["id", "label", "score"]
    assert top1.column("label").to_pylist() == [r["label"] for r in ref1]
    assert np.abs(top1.column("score").to_numpy() - np.array([r["score"] for r in ref1])).max() <= 1e-5
    got = top2.column("labels").to_pylist()
    assert [[d["label"] for d in row] for row in got] == [[d["label"] for d in row] for row in ref2]
    assert max(abs(a["score"] - b["score"]) for x, y in zip(got, ref2) for a, b in zip(x, y)) <= 1e-5


def test_zero_shot_classify_with_labels(tmp_path, model):
    texts = make_texts(300, seed=3)
    src = write_input(tmp_path / "in.jsonl", "jsonl", texts)
    run_file("classify", src, tmp_path / "out.parquet", model=model, column="body", labels=["dog", "fox"])
    out = pq.read_table(tmp_path / "out.parquet")
    ref = numbert.classify(texts, model, labels=["dog", "fox"])
    assert out.column("label").to_pylist() == [r["label"] for r in ref]


def test_batches_cut_pieces_exactly():
    pieces = [(list(range(a, b)), pa.table({"i": list(range(a, b))})) for a, b in [(0, 3), (3, 4), (4, 11)]]
    got = list(batches(iter(pieces), 4))
    assert [v for v, _ in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert [k.column("i").to_pylist() for _, k in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv", "txt"])
def test_reader_counts_and_skips(tmp_path, fmt):
    texts = make_texts(2150, seed=4)  # row groups of 700: the last one (50 rows) is shorter than the skip
    src = write_input(tmp_path / f"in.{fmt}", fmt, texts)
    reader = Reader(src, "text" if fmt == "txt" else "body")
    assert reader.count() == 2150
    rest = [t for values, _ in reader.pieces(skip=777) for t in values]
    assert rest == texts[777:]


def test_progress_bar_knows_the_row_count(tmp_path, model, capsys):
    src = write_input(tmp_path / "in.txt", "txt", make_texts(300, seed=5))
    run_file("embed", src, tmp_path / "out.parquet", model=model, rows_per_batch=100, progress=True)
    err = capsys.readouterr().err
    assert "300/300" in err and "rows" in err
    run_file("embed", src, tmp_path / "out2.parquet", model=model, rows_per_batch=100)  # not a TTY: no bar
    assert "300/300" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad rows and bad usage

def test_bad_rows_fail_naming_the_row(tmp_path, model):
    src = tmp_path / "in.jsonl"
    src.write_text('{"body": "fine"}\n{"body": "also fine"}\n{"body": ""}\n{"body": 5}\n')
    with pytest.raises(ValueError, match=r"row 2: empty text in column 'body'"):
        run_file("embed", src, tmp_path / "out.parquet", model=model, column="body")
    assert not (tmp_path / "out.parquet").exists()


def test_bad_rows_skipped_and_recorded(tmp_path, model):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 0, "body": "fine"}\n{"id": 1, "body": null}\n{"id": 2, "body": 5}\n'
                   '{"id": 3, "body": "   "}\n\n{"id": 4}\nnot json\n{"id": 6, "body": "last one"}\n')
    result = run_file("embed", src, tmp_path / "out.parquet", model=model, column="body", keep=["id"],
                      on_error="skip", rows_per_batch=3)
    out = pq.read_table(tmp_path / "out.parquet")
    assert result.rows == 7 and result.errors == 5  # the blank line is not a row of a JSON lines file
    assert out.column("id").to_pylist() == [0, 1, 2, 3, 4, None, 6]
    errors = out.column("error").to_pylist()
    assert errors[0] is None and errors[6] is None
    assert errors[1].startswith("null") and errors[2].startswith("not a string: int 5")
    assert errors[3].startswith("blank") and errors[4].startswith("null") and "line 7 is not a JSON object" in errors[5]
    emb = out.column("embedding")
    assert emb.is_null().to_pylist() == [False, True, True, True, True, True, False]
    ref = numbert.embed(["fine", "last one"], model, progress=False)
    assert np.abs(matrix_of(emb)[[0, 6]] - ref).max() <= 1e-5


def test_blank_line_of_a_text_file_is_a_bad_row(tmp_path, model):
    src = tmp_path / "in.txt"
    src.write_bytes(b"one\n\nthree\n\xff\xfe bad\n")
    with pytest.raises(ValueError, match="row 1: empty text"):
        run_file("embed", src, tmp_path / "out.parquet", model=model)
    run_file("embed", src, tmp_path / "out.parquet", model=model, on_error="skip")
    errors = pq.read_table(tmp_path / "out.parquet").column("error").to_pylist()
    assert errors[0] is None and errors[1] == "empty text" and errors[2] is None and "line 4 is not UTF-8" in errors[3]


def test_usage_errors_name_the_problem(tmp_path, model):
    src = write_input(tmp_path / "in.parquet", "parquet", make_texts(10))
    with pytest.raises(ValueError, match=r"has no column 'text'.*'id', 'body'"):
        run_file("embed", src, tmp_path / "out.parquet", model=model)
    with pytest.raises(ValueError, match=r"has no column 'nope'"):
        run_file("embed", src, tmp_path / "out.parquet", model=model, column="body", keep=["nope"])
    with pytest.raises(ValueError, match=r"cannot tell the format.*'\.xlsx'"):
        run_file("embed", src, tmp_path / "out.xlsx", model=model, column="body")
    with pytest.raises(ValueError, match="on_error must be one of fail, skip"):
        run_file("embed", src, tmp_path / "out.parquet", model=model, column="body", on_error="ignore")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=rf"rows_per_batch must be a positive integer, found {bad!r}"):
            run_file("embed", src, tmp_path / "out.parquet", model=model, column="body", rows_per_batch=bad)
    assert not (tmp_path / "out.parquet").exists()
    with pytest.raises(ValueError, match="no such file"):
        run_file("embed", tmp_path / "missing.parquet", tmp_path / "out.parquet", model=model)
    pq.write_table(pa.table({"body": ["a"], "embedding": [1]}), tmp_path / "has.parquet")
    with pytest.raises(ValueError, match="--keep embedding: the output writes its own column"):
        run_file("embed", tmp_path / "has.parquet", tmp_path / "out.parquet", model=model, column="body",
                 keep=["embedding"])


# ----------------------------------------------------------------------------- resume after SIGKILL

RUN = """
import sys
from numbert.files import run_file
run_file("embed", sys.argv[1], sys.argv[2], model=sys.argv[3], column="body", keep=["id"],
         rows_per_batch=int(sys.argv[4]), resume="--resume" in sys.argv, progress=False)
"""


@pytest.mark.parametrize("fmt_out", ["parquet", "jsonl"])
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, tiny, fmt_out):
    n, per = 12000, 200
    src = write_input(tmp_path / "in.parquet", "parquet", make_texts(n, seed=6))
    whole, cut = tmp_path / f"whole.{fmt_out}", tmp_path / f"cut.{fmt_out}"
    state = tmp_path / f"cut.{fmt_out}.partial" / "state.json"
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(src), str(cut), str(tiny), str(per)], env=ENV)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                done = json.loads(state.read_text())["rows_done"]
            except (OSError, ValueError, KeyError):
                done = 0
            if done >= 5 * per:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished (or died) before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not cut.exists()  # nothing under the output's name until the run is complete
    killed_at = json.loads(state.read_text())["rows_done"]
    assert 0 < killed_at < n

    subprocess.run([sys.executable, "-c", RUN, str(src), str(cut), str(tiny), str(per), "--resume"], env=ENV,
                   check=True)
    subprocess.run([sys.executable, "-c", RUN, str(src), str(whole), str(tiny), str(per)], env=ENV, check=True)
    a, b = read_output(cut), read_output(whole)
    assert a.column("id").to_pylist() == list(range(n))  # no row lost, none twice, in order
    assert np.abs(matrix_of(a.column("embedding")) - matrix_of(b.column("embedding"))).max() <= 1e-6
    assert not state.parent.exists()


def test_resume_refuses_other_settings_and_restart_discards(tmp_path, model, tiny):
    src = write_input(tmp_path / "in.parquet", "parquet", make_texts(50))
    out = tmp_path / "out.parquet"
    partial = tmp_path / "out.parquet.partial"
    partial.mkdir()
    (partial / "state.json").write_text(json.dumps({"version": 1, "settings": {"column": "other"}, "rows_done": 10,
                                                    "parts": 1, "errors": 0}))
    with pytest.raises(ValueError, match=r"--resume: the interrupted run .* used other settings \(.*column"):
        run_file("embed", src, out, model=model, column="body", resume=True)
    result = run_file("embed", src, out, model=model, column="body")  # no --resume: starts over
    assert result.rows == 50 and result.resumed_from == 0 and not partial.exists()


# ----------------------------------------------------------------------------- memory

MEASURE = """
import json, resource, sys, time
from numbert.files import run_file
kw = dict(model=sys.argv[1], column="body", keep=["id"], pooling=["mean", "max", "cls"], batch_size=256,
          max_length=16, progress=False, rows_per_batch=int(sys.argv[4]))
run_file("embed", sys.argv[2], sys.argv[2] + ".out.parquet", **kw)  # warm: imports, model, compiled kernels
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
rows = run_file("embed", sys.argv[3], sys.argv[3] + ".out.parquet", **kw).rows
seconds = time.perf_counter() - t
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kib": before, "after_kib": after, "rows": rows, "rows_per_s": rows / seconds}))
"""


def test_200k_row_parquet_in_bounded_memory(tmp_path, checkpoint_factory):
    """Peak RSS while embedding 200k rows stays within 100 MiB of the peak after a 2k-row warm-up.

    Holding the 200k rows' results at once (rows_per_batch=200_000) grows it by ~1.2 GiB here: the
    output is 192 float32 per row (mean, max and cls pooling of hidden 64), 150 MiB on its own.
    """
    ckpt = checkpoint_factory(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    n = 200_000
    texts = make_texts(n, seed=7, lo=2, hi=7)
    big = tmp_path / "big.parquet"
    pq.write_table(pa.table({"id": np.arange(n), "body": texts}), big, row_group_size=16384)
    small = tmp_path / "small.parquet"
    pq.write_table(pa.table({"id": np.arange(2000), "body": texts[:2000]}), small)
    del texts
    run = subprocess.run([sys.executable, "-c", MEASURE, str(ckpt), str(small), str(big), "2048"], env=ENV,
                         check=True, capture_output=True, text=True)
    m = json.loads(run.stdout.strip().splitlines()[-1])
    grew_mib = (m["after_kib"] - m["before_kib"]) / 1024
    print(f"200k rows: peak RSS {m['after_kib'] / 1024:.0f} MiB (after warm-up {m['before_kib'] / 1024:.0f} MiB), "
          f"{m['rows_per_s']:.0f} rows/s")
    assert m["rows"] == n
    assert grew_mib < 100, f"peak RSS grew by {grew_mib:.0f} MiB over the 200k rows"
    out = pq.ParquetFile(str(big) + ".out.parquet")
    assert out.metadata.num_rows == n
    assert out.schema_arrow.field("embedding").type == pa.list_(pa.float32(), 192)
    ids = np.concatenate([b.column(0).to_numpy() for b in out.iter_batches(columns=["id"])])
    assert (ids == np.arange(n)).all()


# ----------------------------------------------------------------------------- the command line

def test_cli_round_trip(tmp_path, tiny, tiny_cls, capsys):
    from numbert.cli import main

    texts = make_texts(500, seed=8)
    src = write_input(tmp_path / "in.csv", "csv", texts)
    out = tmp_path / "vectors.parquet"
    assert main(["embed", "--input", str(src), "--column", "body", "--keep", "id", "--output", str(out),
                 "--model", str(tiny), "--rows-per-batch", "128"]) == 0
    assert "wrote 500 rows to" in capsys.readouterr().err
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == list(range(500))
    ref = numbert.embed(texts, str(tiny), progress=False)
    assert np.abs(matrix_of(table.column("embedding")) - ref).max() <= 1e-5

    labels = tmp_path / "labels.jsonl"
    assert main(["classify", "--input", str(src), "--column", "body", "--output", str(labels), "--top-k", "2",
                 "--model", str(tiny_cls)]) == 0
    got = [json.loads(line)["labels"] for line in labels.read_text().splitlines()]
    assert [[d["label"] for d in r] for r in got] == [[d["label"] for d in r]
                                                      for r in numbert.classify(texts, str(tiny_cls), top_k=2)]

    assert main(["embed", "--output", str(out), "--model", str(tiny)]) == 2
    assert "--input and --output go together" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("fine\n\nfine again\n")
    assert main(["embed", "--input", str(bad), "--output", str(tmp_path / "b.parquet"), "--model", str(tiny)]) == 2
    assert "row 1: empty text in column 'text'" in capsys.readouterr().err
    assert main(["embed", "--input", str(bad), "--output", str(tmp_path / "b.parquet"), "--model", str(tiny),
                 "--on-error", "skip"]) == 0
    assert "1 bad row(s) recorded in column 'error'" in capsys.readouterr().err


def test_cli_in_a_subprocess_with_progress_and_resume(tmp_path, tiny):
    src = write_input(tmp_path / "in.txt", "txt", make_texts(700, seed=9))
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "numbert", "embed", "--input", str(src), "--output", str(out), "--model", str(tiny),
           "--rows-per-batch", "100", "--progress", "--resume"]  # --resume with nothing to resume: a fresh run
    run = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "700/700" in run.stderr and "wrote 700 rows" in run.stderr
    assert len(out.read_text().splitlines()) == 700
