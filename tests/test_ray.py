"""numbert.ray on a local Ray cluster that this module starts (2 CPUs, no dashboard) and stops.

Results are held to numbert.embed / numbert.classify on the same texts (<= 1e-5) for one and
two actors and one or several blocks; an actor killed mid-run is restarted and every row still
comes out exactly once; bad rows fail naming the row or come out with their reason.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
import pyarrow as pa  # noqa: E402  (ray[data] depends on it)

import numbert  # noqa: E402
import numbert.ray as nray  # noqa: E402
from numbert.files import matrix_of  # noqa: E402

WORDS = np.array("the quick brown fox jumps over a lazy dog beautiful is better than ugly explicit implicit "
                 "simple complex flat nested sparse dense readability counts".split())


def make_texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(WORDS[rng.integers(0, len(WORDS), k)]) for k in rng.integers(2, 12, n)]


@pytest.fixture(scope="module")
def cluster():
    # Ray starts its workers at nice 15; on a machine shared with other jobs (a CI runner, a
    # workstation) they would wait behind everything else. The raylet reads this from the environment.
    niceness = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    try:
        yield
    finally:
        ray.shutdown()
        if niceness is None:
            os.environ.pop("RAY_worker_niceness", None)
        else:
            os.environ["RAY_worker_niceness"] = niceness


@pytest.fixture(scope="module")
def tiny(checkpoint_factory):
    return checkpoint_factory()


@pytest.fixture(scope="module")
def tiny_cls(checkpoint_factory):
    return checkpoint_factory(num_labels=3, id2label={0: "red", 1: "green", 2: "blue"})


def blocks(texts, n_blocks):
    """A Dataset of (id, text) in exactly n_blocks blocks."""
    table = pa.table({"id": np.arange(len(texts)), "text": texts})
    cuts = np.linspace(0, len(texts), n_blocks + 1).astype(int)
    return ray.data.from_arrow([table.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:])])


def by_id(ds):
    """The dataset's rows as one Table sorted by id (Ray Data may reorder blocks)."""
    table = pa.concat_tables(list(ds.iter_batches(batch_format="pyarrow", batch_size=None)))
    return table.take(pa.compute.sort_indices(table, [("id", "ascending")]))


# ----------------------------------------------------------------------------- equal to numbert

@pytest.mark.parametrize("actors, n_blocks", [(1, 1), (2, 7)])
def test_embed_equals_numbert_embed(cluster, tiny, actors, n_blocks):
    texts = make_texts(1500, seed=actors)
    out = by_id(nray.embed(blocks(texts, n_blocks), str(tiny), actors=actors, batch_size=200))
    assert out.column("id").to_pylist() == list(range(len(texts)))  # every row exactly once
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    ref = numbert.embed(texts, str(tiny), progress=False)  # [N, H]
    assert np.abs(matrix_of(out.column("embedding")) - ref).max() <= 1e-5


def test_classify_equals_numbert_classify(cluster, tiny_cls):
    texts = make_texts(800, seed=3)
    out = by_id(nray.classify(blocks(texts, 5), str(tiny_cls), actors=2, batch_size=150))
    ref = numbert.classify(texts, str(tiny_cls))
    assert out.column("label").to_pylist() == [r["label"] for r in ref]
    assert np.abs(out.column("score").to_numpy() - np.array([r["score"] for r in ref])).max() <= 1e-5


# ----------------------------------------------------------------------------- an actor dies

class MarkedEmbedder(nray.Embedder):
    """Embedder that leaves a file per __init__ (its pid) and per batch, and takes its time per batch."""

    def __init__(self, *args, marks, **kwargs):
        super().__init__(*args, **kwargs)
        self.marks = Path(marks)
        (self.marks / f"init-{os.getpid()}-{time.time_ns()}").touch()

    def __call__(self, batch):
        out = super().__call__(batch)
        time.sleep(0.25)  # long enough a run that the killed actor comes back before it ends
        (self.marks / f"batch-{os.getpid()}-{time.time_ns()}").touch()
        return out


def test_killed_actor_is_replaced_and_every_row_comes_out_once(cluster, tiny, tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file
    texts = make_texts(3000, seed=4)
    ds = nray.map_encoder(MarkedEmbedder, blocks(texts, 6), str(tiny), actors=2, cpus_per_actor=1,
                          batch_size=50, column="text", on_error="fail", marks=str(tmp_path))
    result, failure = {}, []

    def consume():
        try:
            result["table"] = by_id(ds)
        except BaseException as e:  # surfaced by the assertion below
            failure.append(e)

    worker = threading.Thread(target=consume)
    worker.start()

    def pids(kind):
        return {int(p.name.split("-")[1]) for p in tmp_path.glob(f"{kind}-*")}

    deadline = time.time() + 90
    while time.time() < deadline and not (len(pids("init")) == 2 and len(pids("batch")) == 2):
        time.sleep(0.02)
    victims = sorted(pids("batch"))
    assert len(victims) == 2, f"both actors should be running batches; marks: {sorted(os.listdir(tmp_path))}"
    os.kill(victims[0], signal.SIGKILL)
    worker.join(timeout=150)
    assert not worker.is_alive(), "the dataset did not finish after an actor was killed"
    assert not failure, failure
    table = result["table"]
    assert table.column("id").to_pylist() == list(range(len(texts)))  # no row lost, none twice
    ref = numbert.embed(texts, str(tiny), progress=False)
    assert np.abs(matrix_of(table.column("embedding")) - ref).max() <= 1e-5
    assert len(pids("init")) >= 3, "Ray should have started the killed actor again (its __init__ reruns)"


# ----------------------------------------------------------------------------- bad rows

def test_bad_rows_skipped_with_reason_or_failed_naming_the_row(cluster, tiny):
    texts = ["a fine text", None, "", "   ", "another fine one"]
    ds = ray.data.from_arrow(pa.table({"id": np.arange(5), "text": pa.array(texts, pa.string())}))
    out = by_id(nray.embed(ds, str(tiny), on_error="skip"))
    assert out.column("error").to_pylist() == [None, "null (no text)", "empty text",
                                               "blank text (whitespace only)", None]
    assert out.column("embedding").is_null().to_pylist() == [False, True, True, True, False]
    ref = numbert.embed(["a fine text", "another fine one"], str(tiny), progress=False)
    assert np.abs(matrix_of(out.column("embedding"))[[0, 4]] - ref).max() <= 1e-5
    with pytest.raises(Exception, match=r"row 1 of a batch \(None\): null \(no text\) in column 'text'"):
        nray.embed(ds, str(tiny)).materialize()


def test_batch_formats_and_errors_in_process(tiny):
    """The callable class itself, on the three batch formats map_batches can hand it (no actors)."""
    import pandas as pd

    udf = nray.Embedder(str(tiny), column="body", on_error="skip", threads=1)
    texts = ["one text", "two texts here", 5]
    ref = numbert.embed(texts[:2], str(tiny), progress=False)
    arrow = udf(pa.table({"body": ["one text", "two texts here"]}))
    assert np.abs(matrix_of(arrow.column("embedding")) - ref).max() <= 1e-5
    frame = udf(pd.DataFrame({"body": texts}))
    assert np.abs(np.stack(frame["embedding"][:2].to_list()) - ref).max() <= 1e-5
    assert frame["embedding"][2] is None and frame["error"][2].startswith("not a string: int 5")
    numpy = udf({"body": np.array(texts, dtype=object)})
    assert numpy["embedding"].shape == (3, 32) and np.isnan(numpy["embedding"][2]).all()
    assert np.abs(numpy["embedding"][:2] - ref).max() <= 1e-5
    with pytest.raises(ValueError, match=r"the batch has no column 'body'"):
        udf(pa.table({"text": ["x"]}))
    with pytest.raises(ValueError, match=r"already has column\(s\) 'embedding'"):
        udf(pa.table({"body": ["x"], "embedding": [1.0]}))
    with pytest.raises(ValueError, match="actors must be a positive integer"):
        nray.embed(ray.data.range(1), str(tiny), actors=0)
