"""Corpora in files: embed or classify a Parquet, JSON lines, CSV or text file, streamed.

    numbert embed    --input corpus.parquet --column text --keep id --output vectors.parquet
    numbert classify --input reviews.jsonl  --column body --keep id --output labels.parquet --resume

    from numbert.files import run_file
    run_file("embed", "corpus.parquet", "vectors.parquet", column="text", keep=["id"])

The input is read record batch by record batch with pyarrow, `rows_per_batch` rows at a time,
each batch embedded (numbert.embed) or classified (numbert.classify) and written out before the
next is read: memory stays bounded whatever the file size (it grows with one batch, and for
Parquet input with one row group of the text and --keep columns). Row order is kept.

Output columns: the --keep columns, then `embedding` (fixed_size_list<float32>[D], what vector
databases and Arrow/Ray read) or `label` + `score` (top_k=1) or `labels` (list of {label, score}),
then `error` when bad rows are skipped.

Crash safety: the output is built in a sibling folder `<output>.partial/` (one Parquet part per
finished batch, or one JSON lines file that only grows, plus `state.json`: the settings and how
many rows are done, replaced atomically after each batch's data is on disk). Only at the end is
the finished file renamed to `<output>`, so a crash or Ctrl-C never leaves a half-written file
under the name of a complete one. `resume=True` checks that the settings are the same, drops
whatever a killed run wrote after its last finished batch, and goes on from the next row.

Bad rows (null, not a string, empty or blank, an unreadable line) are never dropped silently:
on_error="fail" (default) stops at the first with its row index; on_error="skip" writes the row
with a null result and the reason in the `error` column.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import positive_int

ON_ERROR = ("fail", "skip")
TASKS = ("embed", "classify")
DEFAULT_ROWS_PER_BATCH = 2048  # rows read, encoded and written per step: the unit of memory and of resume
MERGE_ROW_GROUP_ROWS = 16384  # rows per row group of the final Parquet file (parts are merged up to this)
STATE_VERSION = 1
INPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
                 ".json": "jsonl", ".csv": "csv", ".txt": "text", ".text": "text"}
OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
ERROR_COLUMN = "error"


def require_pyarrow():
    try:
        import pyarrow
    except ImportError:
        raise ImportError("reading and writing corpus files needs pyarrow: pip install 'numbert[files]'") from None
    return pyarrow


def file_format(path, table: dict, what: str) -> str:
    """The format a file name's suffix says (INPUT_FORMATS / OUTPUT_FORMATS), else a ValueError naming it."""
    suffix = Path(path).suffix.lower()
    if suffix not in table:
        known = ", ".join(sorted(set(table)))
        raise ValueError(f"{what} {path}: cannot tell the format from the suffix {suffix or '(none)'!r}; "
                         f"use one of {known}")
    return table[suffix]


# ----------------------------------------------------------------------------- bad rows

@dataclass(frozen=True)
class BadRow:
    """A row the reader could not turn into a value (a line that is not JSON, not UTF-8)."""
    reason: str


def row_problem(value) -> str | None:
    """Why `value` cannot be embedded or classified, or None when it is a usable text."""
    if isinstance(value, BadRow):
        return value.reason
    if value is None:
        return "null (no text)"
    if not isinstance(value, str):
        return f"not a string: {type(value).__name__} {value!r:.40}"
    if not value.strip():
        return "empty text" if value == "" else "blank text (whitespace only)"
    return None


# ----------------------------------------------------------------------------- encoding one batch

def load_model(model=None, *, backend=None, revision=None, threads=None):
    """numbert.load(model) (the default model when None); a loaded Model as is."""
    import numbert
    from numbert.hub import DEFAULT_MODEL

    if isinstance(model, numbert.Model):
        return model
    kwargs = {"revision": revision, "threads": threads}
    if backend is not None:
        kwargs["backend"] = backend
    return numbert.load(DEFAULT_MODEL if model is None else model, **kwargs)


class RowEncoder:
    """Embed or classify a batch of rows with a loaded model; bad rows reported per row.

    task: "embed" (numbert.embed) or "classify" (numbert.classify); options: their keyword
    arguments (pooling, normalize, labels, top_k, max_length, ...). Results are pyarrow arrays
    with one entry per row, in row order; a skipped bad row has a null result and its reason
    in the error list.
    """

    def __init__(self, task: str, model, *, on_error: str = "fail", output_column: str = "embedding",
                 column: str = "text", **options):
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, found {task!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, found {on_error!r}")
        options.pop("progress", None)  # a bar per batch would be noise; callers draw one for the whole file
        self.task, self.model, self.on_error, self.column, self.options = task, model, on_error, column, options
        if task == "embed":
            probe = self._run(["probe"])  # [1, D]: the width, known before any row (a batch may be all bad)
            self.width = int(probe.shape[1])
            self.names = (output_column,)
        else:
            self.top_k = options.get("top_k", 1)
            self.names = ("label", "score") if self.top_k == 1 else ("labels",)

    def _run(self, texts):
        import numbert

        fn = numbert.embed if self.task == "embed" else numbert.classify
        return fn(texts, self.model, progress=False, **self.options)

    def result_fields(self):
        """The pyarrow fields of the result columns."""
        pa = require_pyarrow()
        if self.task == "embed":
            return [pa.field(self.names[0], pa.list_(pa.float32(), self.width))]
        if self.top_k == 1:
            return [pa.field("label", pa.string()), pa.field("score", pa.float32())]
        return [pa.field("labels", pa.list_(pa.struct([("label", pa.string()), ("score", pa.float32())])))]

    def __call__(self, values, first_row: int | None = None):
        """values: N Python objects (texts, ideally) -> ({name: pa.Array [N]}, errors [N] of str or None).

        first_row: the index of values[0] in the whole input, for error messages (None: a batch
        of unknown position, as in Ray; the message then names the row of the batch and its text).
        """
        pa = require_pyarrow()
        values = list(values)
        errors = [row_problem(v) for v in values]
        if self.on_error == "fail":
            for i, problem in enumerate(errors):
                if problem is not None:
                    where = f"row {first_row + i}" if first_row is not None else f"row {i} of a batch ({values[i]!r:.40})"
                    raise ValueError(f"{where}: {problem} in column {self.column!r}; "
                                     "on_error='skip' (--on-error skip) writes such rows with an error instead")
        good = [i for i, e in enumerate(errors) if e is None]
        ok = np.zeros(len(values), dtype=bool)  # [N]
        ok[good] = True
        results = self._run([values[i] for i in good]) if good else None
        if self.task == "embed":
            full = np.zeros((len(values), self.width), dtype=np.float32)  # [N, D], zeros under null rows
            if good:
                full[good] = results
            columns = {self.names[0]: fixed_size_list(full, ok)}
        elif self.top_k == 1:
            labels, scores = [None] * len(values), [None] * len(values)
            for i, r in zip(good, results or []):
                labels[i], scores[i] = r["label"], r["score"]
            columns = {"label": pa.array(labels, pa.string()), "score": pa.array(scores, pa.float32())}
        else:
            ranked = [None] * len(values)
            for i, r in zip(good, results or []):
                ranked[i] = r
            columns = {"labels": pa.array(ranked, self.result_fields()[0].type)}
        return columns, errors


def fixed_size_list(matrix: np.ndarray, valid: np.ndarray | None = None):
    """float32 [N, D] -> pyarrow fixed_size_list<float32>[D] of N rows; rows where valid is False are null."""
    pa = require_pyarrow()
    N, D = matrix.shape
    values = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))  # [N * D]
    if valid is None or valid.all():
        return pa.FixedSizeListArray.from_arrays(values, D)
    bitmap = pa.array(np.asarray(valid, dtype=bool)).buffers()[1]  # a bool array's data is a validity bitmap
    return pa.Array.from_buffers(pa.list_(pa.float32(), D), N, [bitmap], children=[values])


def matrix_of(array) -> np.ndarray:
    """pyarrow fixed_size_list<float32>[D] (nulls as NaN rows) -> float32 [N, D]."""
    pa = require_pyarrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    D = array.type.list_size
    out = array.flatten().to_numpy(zero_copy_only=False).reshape(-1, D).astype(np.float32)  # [valid, D]
    if array.null_count == 0:
        return out
    full = np.full((len(array), D), np.nan, dtype=np.float32)  # [N, D]
    full[~np.asarray(array.is_null())] = out
    return full


# ----------------------------------------------------------------------------- reading

def _check_columns(path, available, column, keep):
    missing = [c for c in [column, *keep] if c not in available]
    if missing:
        raise ValueError(f"{path} has no column {', '.join(map(repr, missing))}; its columns are "
                         f"{', '.join(map(repr, available)) or '(none)'}")


class Reader:
    """Rows of one input file as pieces (values of the text column, a pyarrow Table of the --keep columns).

    count() is the number of rows (for the progress bar); pieces(skip) yields every row from row
    `skip` on, in order, in pieces of any size (the caller cuts them into batches).
    """

    def __init__(self, path, column="text", keep=(), fmt=None):
        require_pyarrow()
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"--input {path}: no such file")
        self.fmt = fmt or file_format(path, INPUT_FORMATS, "--input")
        self.column, self.keep = column, list(keep)
        if self.fmt == "text":
            if self.keep:
                raise ValueError(f"{path} is a plain text file (one text per line): it has no columns to --keep")
        elif self.fmt == "parquet":
            import pyarrow.parquet as pq

            self.parquet = pq.ParquetFile(self.path)
            _check_columns(path, self.parquet.schema_arrow.names, column, self.keep)
        elif self.fmt == "csv":
            _check_columns(path, self._csv_header(), column, self.keep)

    # -- row count
    def count(self) -> int:
        if self.fmt == "parquet":
            return self.parquet.metadata.num_rows
        if self.fmt == "csv":
            return sum(b.num_rows for b in self._open_csv(columns=[self.column]))
        n = 0
        with open(self.path, "rb") as f:
            for line in f:
                n += self.fmt == "text" or bool(line.strip())
        return n

    def pieces(self, skip=0):
        return getattr(self, f"_pieces_{self.fmt}")(skip)

    # -- Parquet: whole row groups before `skip` are not even read
    def _pieces_parquet(self, skip):
        meta = self.parquet.metadata
        start, groups = 0, []
        for g in range(meta.num_row_groups):
            rows = meta.row_group(g).num_rows
            if not groups and start + rows <= skip:  # wholly done: not read at all
                start += rows
                continue
            groups.append(g)
        if not groups:
            return
        drop = skip - start  # rows of the first group read that were done before
        for batch in self.parquet.iter_batches(batch_size=DEFAULT_ROWS_PER_BATCH, row_groups=groups,
                                               columns=[self.column, *self.keep], use_threads=False):
            if drop >= batch.num_rows:
                drop -= batch.num_rows
                continue
            batch, drop = batch.slice(drop), 0
            yield self._arrow_piece(batch)

    def _arrow_piece(self, batch):
        import pyarrow as pa

        table = pa.Table.from_batches([batch])
        texts = table.column(self.column)
        if pa.types.is_dictionary(texts.type):
            texts = texts.cast(texts.type.value_type)
        return texts.to_pylist(), table.select(self.keep)

    # -- CSV: the text column is read as strings whatever it looks like
    def _csv_header(self):
        import csv

        with open(self.path, newline="", encoding="utf-8", errors="replace") as f:
            return next(csv.reader(f), [])

    def _open_csv(self, columns=None):
        import pyarrow as pa
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(include_columns=columns or [self.column, *self.keep],
                                       column_types={self.column: pa.string()}, strings_can_be_null=False)
        try:
            return pacsv.open_csv(self.path, read_options=pacsv.ReadOptions(block_size=1 << 20),
                                  convert_options=convert)
        except pa.ArrowInvalid as e:
            raise ValueError(f"{self.path}: {e}") from None

    def _pieces_csv(self, skip):
        import pyarrow as pa

        reader = self._open_csv()
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as e:  # e.g. a --keep column whose type changes after the first block
                raise ValueError(f"{self.path}: {e}") from None
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            batch, skip = batch.slice(skip), 0
            yield self._arrow_piece(batch)

    # -- plain text: one row per line, blank lines included (they are bad rows, never dropped)
    def _pieces_text(self, skip):
        texts = []
        with open(self.path, "rb") as f:
            for row, line in enumerate(f):
                if row < skip:
                    continue
                line = line.rstrip(b"\n").rstrip(b"\r")
                try:
                    texts.append(line.decode("utf-8"))
                except UnicodeDecodeError as e:
                    texts.append(BadRow(f"line {row + 1} is not UTF-8 ({e.reason} at byte {e.start})"))
                if len(texts) == DEFAULT_ROWS_PER_BATCH:
                    yield texts, None
                    texts = []
        if texts:
            yield texts, None

    # -- JSON lines: one object per non-blank line
    def _pieces_jsonl(self, skip):
        import pyarrow as pa

        texts, kept, types = [], {k: [] for k in self.keep}, {}
        row = 0

        def flush():
            nonlocal texts, kept
            arrays = []
            for k in self.keep:
                try:
                    arr = pa.array(kept[k], type=types.get(k))
                except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                    raise ValueError(f"{self.path}: --keep column {k!r} changes type near row {row}: it was "
                                     f"{types[k]} in the first rows ({e})") from None
                if k not in types and not pa.types.is_null(arr.type):
                    types[k] = arr.type  # fixed by the first batch where the column holds a value
                arrays.append(arr)
            piece = (texts, pa.table(dict(zip(self.keep, arrays))) if self.keep else None)
            texts, kept = [], {k: [] for k in self.keep}
            return piece

        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue  # blank lines are not rows of a JSON lines file
                row += 1
                if row <= skip:
                    continue
                try:
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise ValueError(f"a JSON {type(obj).__name__}, not an object")
                except ValueError as e:
                    obj = None
                    texts.append(BadRow(f"line {number} is not a JSON object ({str(e):.60})"))
                else:
                    texts.append(obj.get(self.column))
                for k in self.keep:
                    kept[k].append(obj.get(k) if obj is not None else None)
                if len(texts) == DEFAULT_ROWS_PER_BATCH:
                    yield flush()
        if texts:
            yield flush()


def batches(pieces, rows: int):
    """Pieces of any size -> (values, keep table) of exactly `rows` rows each (the last may be short)."""
    import pyarrow as pa

    texts, tables, have = [], [], 0
    for piece_texts, piece_keep in pieces:
        texts.extend(piece_texts)
        if piece_keep is not None:
            tables.append(piece_keep)
        have += len(piece_texts)
        while have >= rows:
            keep = pa.concat_tables(tables).combine_chunks() if tables else None
            yield texts[:rows], (keep.slice(0, rows) if keep is not None else None)
            texts = texts[rows:]
            tables = [keep.slice(rows)] if keep is not None else []
            have -= rows
    if have:
        yield texts, (pa.concat_tables(tables).combine_chunks() if tables else None)


# ----------------------------------------------------------------------------- writing

class Partial:
    """The folder `<output>.partial/` where a run builds its output, and its state.json."""

    def __init__(self, output: Path, fmt: str):
        self.output, self.fmt = output, fmt
        self.folder = output.with_name(output.name + ".partial")
        self.state_path = self.folder / "state.json"
        self.data = self.folder / "data.jsonl"  # JSON lines output: one file that only grows
        self.merged = self.folder / "merged.parquet"  # Parquet output: the parts, merged at the end

    def part(self, k: int) -> Path:
        return self.folder / f"part-{k:08d}.parquet"

    def read_state(self):
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None

    def write_state(self, state: dict):
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)  # atomic: a reader sees the old state or the new one


def _sync(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonl_lines(table, names) -> str:
    """The rows of a result table as JSON lines; float32 vectors written with 9 significant digits
    (enough to read back the same float32)."""
    import pyarrow as pa

    columns = []
    for name in table.column_names:
        col = table.column(name)
        key = json.dumps(name, ensure_ascii=False)
        if pa.types.is_fixed_size_list(col.type):
            mat, nulls = matrix_of(col), np.asarray(col.is_null())
            cells = ["null" if null else "[" + ",".join(map("%.9g".__mod__, row.tolist())) + "]"
                     for row, null in zip(mat, nulls)]
        else:
            cells = [json.dumps(v, ensure_ascii=False, default=str) for v in col.to_pylist()]
        columns.append((key, cells))
    lines = ["{" + ",".join(f"{key}:{cells[i]}" for key, cells in columns) + "}\n" for i in range(table.num_rows)]
    return "".join(lines)


# ----------------------------------------------------------------------------- the run

@dataclass
class FileResult:
    output: Path
    rows: int
    errors: int  # bad rows written with an error (on_error="skip")
    resumed_from: int  # rows already done by an interrupted run


def run_file(task: str, input, output, *, model=None, column="text", keep=(), resume=False, on_error="fail",
             rows_per_batch=DEFAULT_ROWS_PER_BATCH, progress=None, backend=None, revision=None, threads=None,
             output_column="embedding", **options) -> FileResult:
    """Embed or classify every row of `input` into `output` (see the module docstring).

    task: "embed" or "classify"; options: keyword arguments of numbert.embed / numbert.classify
    (pooling, normalize, labels, top_k, template, function_to_apply, batch_size, max_length, ...).
    progress: a tqdm bar over rows on stderr (None: when stderr is a terminal).
    """
    require_pyarrow()
    import pyarrow as pa
    import pyarrow.parquet as pq

    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, found {task!r}")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, found {on_error!r}")
    positive_int(rows_per_batch, "rows_per_batch")
    keep = list(keep or ())
    input, output = Path(input), Path(output)
    out_fmt = file_format(output, OUTPUT_FORMATS, "--output")
    if input.resolve() == output.resolve():
        raise ValueError(f"--output {output} is the --input file")
    reader = Reader(input, column, keep)

    m = load_model(model, backend=backend, revision=revision, threads=threads)
    encoder = RowEncoder(task, m, on_error=on_error, output_column=output_column, column=column, **options)
    clash = [n for n in [*encoder.names, ERROR_COLUMN] if n in keep]
    if clash:
        raise ValueError(f"--keep {', '.join(clash)}: the output writes its own column(s) of that name")

    stat = input.stat()
    settings = {"task": task, "input": str(input.resolve()), "input_size": stat.st_size,
                "input_mtime_ns": stat.st_mtime_ns, "column": column, "keep": keep, "output_format": out_fmt,
                "model": str(m.path), "backend": m.requested_backend, "on_error": on_error, "output_column": output_column,
                "options": {k: v for k, v in sorted(options.items()) if k != "progress"}}
    settings = json.loads(json.dumps(settings, default=str))  # as it reads back from state.json
    partial = Partial(output, out_fmt)
    done, parts, errors = 0, 0, 0
    state = partial.read_state() if partial.folder.exists() else None
    if resume and state is not None:
        if state.get("version") != STATE_VERSION or state.get("settings") != settings:
            old = state.get("settings") or {}
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise ValueError(f"--resume: the interrupted run in {partial.folder} used other settings "
                             f"({', '.join(diff) or 'state format'} differ); run without --resume to start over")
        done, parts, errors = state["rows_done"], state["parts"], state["errors"]
        if state.get("complete"):  # killed while renaming the finished output into place
            return _finish(partial, FileResult(output=output, rows=done, errors=errors, resumed_from=done))
    else:
        if partial.folder.exists():
            if not resume:
                print(f"numbert: starting over; discarding the interrupted run in {partial.folder} "
                      "(--resume continues one)", file=sys.stderr)
            shutil.rmtree(partial.folder)
        partial.folder.mkdir(parents=True)
    resumed_from = done

    total = reader.count()
    if out_fmt == "jsonl":
        with open(partial.data, "ab") as f:  # drop what a killed run wrote after its last finished batch
            f.truncate(state["jsonl_bytes"] if resumed_from else 0)

    def save(rows_done, parts_done, errors_done, complete=False):
        partial.write_state({"version": STATE_VERSION, "settings": settings, "rows_done": rows_done,
                             "parts": parts_done, "errors": errors_done, "complete": complete,
                             "jsonl_bytes": partial.data.stat().st_size if out_fmt == "jsonl" else 0})

    save(done, parts, errors)
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else bool(progress)
    desc = f"{task} {input.name}"
    with tqdm(total=total, initial=done, unit="rows", desc=desc, file=sys.stderr, disable=not show,
              dynamic_ncols=True) as bar, \
            (open(partial.data, "ab") if out_fmt == "jsonl" else contextlib.nullcontext()) as jsonl:
        for values, kept in batches(reader.pieces(skip=done), rows_per_batch):
            columns, bad = encoder(values, first_row=done)
            names = (kept.column_names if kept is not None else []) + list(columns)
            arrays = (kept.columns if kept is not None else []) + list(columns.values())
            if on_error == "skip":
                names.append(ERROR_COLUMN)
                arrays.append(pa.array(bad, pa.string()))
            table = pa.Table.from_arrays(arrays, names=names)
            if out_fmt == "parquet":
                path = partial.part(parts)
                pq.write_table(table, path)
                _sync(path)
            else:
                jsonl.write(_jsonl_lines(table, encoder.names).encode("utf-8"))
                jsonl.flush()
                os.fsync(jsonl.fileno())
            done += len(values)
            parts += 1
            errors += sum(e is not None for e in bad)
            save(done, parts, errors)  # only now is the batch counted as finished
            bar.update(len(values))

    # every row is written: assemble the output under a temporary name, then rename it into place
    if done != total:
        raise RuntimeError(f"{input} gave {done} rows, but counted {total}: was it changed while being read?")
    if out_fmt == "parquet":
        _merge_parts(partial, parts, partial.merged, encoder)
    save(done, parts, errors, complete=True)
    return _finish(partial, FileResult(output=output, rows=done, errors=errors, resumed_from=resumed_from))


def _finish(partial: Partial, result: FileResult) -> FileResult:
    """Rename the assembled file to the output's name, then remove the partial folder."""
    src = partial.merged if partial.fmt == "parquet" else partial.data
    if src.exists():  # absent only when a run was killed after this rename: nothing left to do but clean up
        _sync(src)
        os.replace(src, partial.output)
    shutil.rmtree(partial.folder)
    return result


def _merge_parts(partial: Partial, parts: int, dest: Path, encoder: RowEncoder):
    """Concatenate the part files into one Parquet file, a few parts per row group, in bounded memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if parts == 0:  # an input with no rows: an empty file with the result columns
        pq.write_table(pa.schema(encoder.result_fields()).empty_table(), dest)
        return
    # one schema for all parts: a kept JSON lines column that was all null in one batch has type null there
    schema = pa.unify_schemas([pq.read_schema(partial.part(k)) for k in range(parts)], promote_options="permissive")
    writer, buffer, rows = pq.ParquetWriter(dest, schema), [], 0
    try:
        for k in range(parts):
            table = pq.read_table(partial.part(k))
            if table.schema != schema:
                table = table.cast(schema)
            buffer.append(table)
            rows += table.num_rows
            if rows >= MERGE_ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(buffer))
                buffer, rows = [], 0
        if buffer:
            writer.write_table(pa.concat_tables(buffer))
    finally:
        writer.close()


# ----------------------------------------------------------------------------- the command line

def add_arguments(p):
    """--input/--output/--column/--keep/--resume/--on-error for `numbert embed` and `numbert classify`."""
    g = p.add_argument_group("corpus files (streamed; needs pip install 'numbert[files]')")
    g.add_argument("--input", metavar="F", default=None,
                   help="read rows from F: .parquet, .jsonl, .csv, or .txt (one text per line)")
    g.add_argument("--output", metavar="F", default=None,
                   help="write results to F: .parquet or .jsonl (--keep columns, then the result columns)")
    g.add_argument("--column", default="text", metavar="NAME", help="the text column of --input (default: text)")
    g.add_argument("--keep", default="", metavar="A,B", help="columns of --input copied to --output (e.g. an id)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run into the same --output from its last finished batch")
    g.add_argument("--on-error", choices=ON_ERROR, default="fail",
                   help="a bad row (null, not text, empty): fail naming it (default), or skip: write it with "
                        "a null result and the reason in an 'error' column")
    g.add_argument("--rows-per-batch", type=int, default=DEFAULT_ROWS_PER_BATCH, metavar="N",
                   help=f"rows read, encoded and written per step (default {DEFAULT_ROWS_PER_BATCH})")


def run_cli(args, task: str, top_k=1) -> int:
    """`numbert embed/classify --input F --output F ...`; returns the exit code (top_k: classify's, parsed)."""
    if args.input is None or args.output is None:
        raise ValueError("--input and --output go together (one file in, one file out)")
    if args.texts or args.file is not None:
        raise ValueError("give texts as arguments / --file, or a corpus with --input, not both")
    if getattr(args, "json", False) or getattr(args, "out", None) is not None:
        raise ValueError("--json and --out are for texts given on the command line; with --input, results go "
                         "to --output")
    options = dict(batch_size=args.batch_size, max_length=args.max_length, long_text=args.long_text,
                   stride=args.stride)
    if task == "embed":
        options.update(pooling=args.pooling, normalize=args.normalize)
    else:
        labels = [s.strip() for s in args.labels.split(",") if s.strip()] if args.labels is not None else None
        options.update(labels=labels, top_k=top_k, function_to_apply=args.function, template=args.template,
                       multi_label=args.multi_label)
    keep = [k.strip() for k in args.keep.split(",") if k.strip()]
    result = run_file(task, args.input, args.output, model=args.model, column=args.column, keep=keep,
                      resume=args.resume, on_error=args.on_error, rows_per_batch=args.rows_per_batch,
                      progress=args.progress, backend=args.backend, revision=args.revision, **options)
    note = f", {result.errors} bad row(s) recorded in column {ERROR_COLUMN!r}" if result.errors else ""
    again = f" (resumed after row {result.resumed_from})" if result.resumed_from else ""
    print(f"wrote {result.rows} rows to {result.output}{again}{note}", file=sys.stderr)
    return 0
