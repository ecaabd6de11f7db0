"""numbert on a Ray cluster: embed or classify a ray.data.Dataset, one model per actor.

    import ray, numbert.ray
    ds = ray.data.read_parquet("s3://bucket/corpus/")               # a column "text"
    ds = numbert.ray.embed(ds, "sentence-transformers/all-MiniLM-L6-v2", actors=8)
    ds.write_parquet("s3://bucket/vectors/")                         # + a column "embedding"

or, with Ray Data's own knobs, the callable classes this module is built on:

    ds.map_batches(numbert.ray.Embedder, fn_constructor_kwargs={"model": "path/on/every/node"},
                   batch_format="pyarrow", batch_size=1024, num_cpus=4,
                   compute=ray.data.ActorPoolStrategy(size=8))

Each actor loads the model once, in __init__, and computes with as many threads as the
CPUs Ray gave it (num_cpus). Batches come in and go out as pyarrow Tables (pandas
DataFrames and dicts of NumPy arrays work too), with the new column(s) appended: `embedding`
(fixed_size_list<float32>[D]; a [N, D] array for NumPy batches), or `label` + `score`
(top_k=1) or `labels` (list of {label, score}). Each row's result equals numbert.embed /
numbert.classify on the same text (to 1e-5; only batch composition differs) whatever the
number of actors and blocks, and Ray Data keeps the input's row order when
DataContext.execution_options.preserve_order is set (it is not by default: carry an id).

Faults: Ray Data creates its pool actors with max_restarts=-1 and max_task_retries=-1 (its
defaults): an actor that dies is restarted, its __init__ runs again, and the batch it held is run
again, so every row comes out exactly once (tests/test_ray.py kills one to check). Bad rows (null,
not a string, empty) fail the run naming the row (on_error="fail"), or come out with a null
result and their reason in an `error` column (on_error="skip").
"""

from __future__ import annotations

import ray
import ray.data

from .errors import positive_int
from .files import ERROR_COLUMN, RowEncoder, load_model, matrix_of

DEFAULT_BATCH_SIZE = 1024  # rows per map_batches call; numbert.embed cuts them into forward passes of 32


def actor_cpus() -> int:
    """The CPUs Ray assigned to this worker (its num_cpus), at least 1; outside Ray, None."""
    if not ray.is_initialized():
        return None
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")  # {} in a driver
    return max(1, int(round(cpus))) if cpus else 1


class _Encode:
    """The callable class behind Embedder and Classifier (map_batches creates one per actor)."""

    task = None

    def __init__(self, model=None, *, column="text", output_column="embedding", on_error="fail", threads=None,
                 backend=None, revision=None, **options):
        m = load_model(model, backend=backend, revision=revision, threads=threads or actor_cpus())
        self.column, self.on_error = column, on_error
        self.encoder = RowEncoder(self.task, m, on_error=on_error, output_column=output_column, column=column,
                                  **options)

    def __call__(self, batch):
        import pyarrow as pa

        if isinstance(batch, pa.Table):
            return self._arrow(batch)
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - ray[data] brings pandas
            pd = None
        if pd is not None and isinstance(batch, pd.DataFrame):
            return self._pandas(batch)
        if isinstance(batch, dict):
            return self._numpy(batch)
        raise TypeError(f"numbert.ray: a batch must be a pyarrow Table, a pandas DataFrame or a dict of arrays, "
                        f"found {type(batch).__name__}")

    def _values(self, names, get):
        if self.column not in names:
            raise ValueError(f"numbert.ray: the batch has no column {self.column!r} (its columns: "
                             f"{', '.join(map(repr, names))}); pass column=...")
        clash = [n for n in [*self.encoder.names, ERROR_COLUMN] if n in names
                 and (n != ERROR_COLUMN or self.on_error == "skip")]
        if clash:
            raise ValueError(f"numbert.ray: the batch already has column(s) {', '.join(map(repr, clash))}, "
                             "which this step would write")
        return get(self.column)

    def _arrow(self, table):
        import pyarrow as pa

        values = self._values(table.column_names, lambda c: table.column(c).to_pylist())
        columns, errors = self.encoder(values)
        for name, array in columns.items():
            table = table.append_column(name, array)
        if self.on_error == "skip":
            table = table.append_column(ERROR_COLUMN, pa.array(errors, pa.string()))
        return table

    def _pandas(self, frame):
        values = self._values(list(frame.columns), lambda c: frame[c].tolist())
        columns, errors = self.encoder(values)
        out = frame.copy(deep=False)
        for name, array in columns.items():
            if self.task == "embed":  # one float32 [D] array per row, None where a bad row was skipped
                matrix = matrix_of(array)  # [N, D]
                out[name] = [None if bad else row for row, bad in zip(matrix, array.is_null().to_pylist())]
            else:
                out[name] = array.to_pylist()
        if self.on_error == "skip":
            out[ERROR_COLUMN] = errors
        return out

    def _numpy(self, batch: dict):
        import numpy as np

        values = self._values(list(batch), lambda c: list(batch[c]))
        values = [v.item() if isinstance(v, np.generic) else v for v in values]  # np.str_ -> str
        columns, errors = self.encoder(values)
        out = dict(batch)
        for name, array in columns.items():
            if self.task == "embed":
                out[name] = matrix_of(array)  # [N, D], NaN rows where a bad row was skipped
            else:
                out[name] = np.asarray(array.to_pylist(), dtype=object)
        if self.on_error == "skip":
            out[ERROR_COLUMN] = np.asarray(errors, dtype=object)
        return out


class Embedder(_Encode):
    """map_batches(Embedder, fn_constructor_kwargs={"model": ..., "column": "text", ...}): adds `embedding`.

    Constructor: model (folder present on every node, Hub id, or None for all-MiniLM-L6-v2),
    column, output_column, on_error ("fail" | "skip"), threads (default: the actor's num_cpus),
    backend, revision, and numbert.embed's options (pooling, normalize, batch_size, max_length, ...).
    """

    task = "embed"


class Classifier(_Encode):
    """map_batches(Classifier, fn_constructor_kwargs={"model": ..., ...}): adds `label` + `score` (or `labels`).

    Constructor: as Embedder, with numbert.classify's options (labels, top_k, template,
    function_to_apply, ...) instead of embed's.
    """

    task = "classify"


def map_encoder(cls, ds, model=None, *, actors, cpus_per_actor, batch_size, column, on_error, **options):
    """ds.map_batches(cls, ...) with a fixed pool of `actors` actors of `cpus_per_actor` CPUs each;
    cls: Embedder, Classifier, or a subclass of them."""
    if not isinstance(ds, ray.data.Dataset):
        raise TypeError(f"numbert.ray: expected a ray.data.Dataset, found {type(ds).__name__}")
    for name, value in (("actors", actors), ("cpus_per_actor", cpus_per_actor), ("batch_size", batch_size)):
        positive_int(value, name)
    return ds.map_batches(
        cls,
        fn_constructor_kwargs=dict(model=model, column=column, on_error=on_error, threads=cpus_per_actor, **options),
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        # Fault tolerance comes from Ray Data's actor pool, which creates its actors with
        # max_restarts=-1 and max_task_retries=-1 (ActorPoolMapOperator._apply_default_remote_args;
        # passing them to map_batches is deprecated since Ray 2.5x): an actor that dies is started
        # again, its __init__ reloading the model, and the batch it held is run again, so every row
        # comes out once. tests/test_ray.py kills an actor to hold Ray to it.
    )


def embed(ds, model=None, *, column="text", output_column="embedding", actors=1, cpus_per_actor=1,
          batch_size=DEFAULT_BATCH_SIZE, on_error="fail", **options):
    """A Dataset with a new column `output_column`: numbert.embed of `column`, fixed_size_list<float32>[D].

    actors: how many model copies run at once (each loads the model in its own process);
    cpus_per_actor: Ray CPUs per actor, also numbert's threads in it. Lazy, as Ray Data is:
    nothing runs until the Dataset is consumed (write_parquet, take, iter_batches, ...).
    """
    return map_encoder(Embedder, ds, model, actors=actors, cpus_per_actor=cpus_per_actor, batch_size=batch_size,
                column=column, on_error=on_error, output_column=output_column, **options)


def classify(ds, model=None, *, column="text", actors=1, cpus_per_actor=1, batch_size=DEFAULT_BATCH_SIZE,
             on_error="fail", **options):
    """A Dataset with `label` and `score` (top_k=1) or `labels` (top_k>1 or None): numbert.classify of `column`."""
    return map_encoder(Classifier, ds, model, actors=actors, cpus_per_actor=cpus_per_actor, batch_size=batch_size,
                column=column, on_error=on_error, **options)
