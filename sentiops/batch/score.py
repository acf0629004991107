"""Score one shard: every row gets an outcome, the texts go through the model in length-sorted
batches, and the rows are written to Parquet as they are scored.

A shard is read in windows of `SORT_WINDOW` batches; each window's scorable texts are sorted by
length and cut into batches of `batch_size`, so a batch pads short texts only to other short
ones (the transformer's `predict_proba` then buckets by token count inside a batch, as the
predictor does). The model is `sentiops.models.load_model`'s: the serving form in the model
directory (ONNX Runtime for a transformer), the same `predict_proba` the predictor runs.

Every row's `status` says what happened to it:

    ok          scored: label, confidence, one probability per class, and `read`: the share
                of the text the model read (1.0: all of it; a transformer reads a long text
                in windows up to its max_tokens, then its start and end)
    empty       no text (null, missing, or only whitespace)
    too_long    longer than `max_chars` characters (the predictor's limit): not scored
    not_text    the value is not text (a JSON number or object, bytes that are not UTF-8)
    unreadable  the line could not be read (JSONL: not JSON, or not an object)

with `error` saying why for every status but ok. A bad row never fails the job.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sentiops.batch import inputs
from sentiops.batch.output import Output
from sentiops.batch.plan import SORT_WINDOW, BatchPlan, Shard
from sentiops.errors import DataError
from sentiops.store.checksum import sha256_file

OK, EMPTY, TOO_LONG = "ok", "empty", "too_long"
NOT_TEXT, UNREADABLE = inputs.NOT_TEXT, inputs.UNREADABLE
STATUSES = (OK, EMPTY, TOO_LONG, NOT_TEXT, UNREADABLE)
#: Output rows buffered before they are written as one Parquet row group.
ROW_GROUP_ROWS = 16_384
#: Columns the job writes; input columns of the same names are kept as input_<name>.
OWN_COLUMNS = (
    "file",
    "row",
    "text",
    "status",
    "label",
    "confidence",
    "read",
    "model_version",
    "error",
)


def prob_column(label: str) -> str:
    return f"prob_{label}"


def kept_name(column: str, labels: list[str]) -> str:
    own = set(OWN_COLUMNS) | {prob_column(lab) for lab in labels}
    return f"input_{column}" if column in own else column


def outcomes(chunk: inputs.Chunk, max_chars: int) -> tuple[list[str], list[str | None]]:
    """Each row's status and, when it is not scored, why."""
    status: list[str] = []
    error: list[str | None] = []
    for i, text in enumerate(chunk.texts):
        if i in chunk.problems:
            kind, why = chunk.problems[i]
            status.append(kind)
            error.append(why)
        elif text is None or (isinstance(text, str) and not text.strip()):
            status.append(EMPTY)
            error.append("no text" if text is None else "the text is empty or whitespace")
        elif not isinstance(text, str):
            status.append(NOT_TEXT)
            error.append(f"the value is a {type(text).__name__}, not text")
        elif len(text) > max_chars:
            status.append(TOO_LONG)
            error.append(f"{len(text)} characters, more than the limit of {max_chars}")
        else:
            status.append(OK)
            error.append(None)
    return status, error


def length_batches(texts: list[str], rows: list[int], batch_size: int) -> list[list[int]]:
    """`rows` (indices into `texts`) sorted by text length and cut into batches."""
    order = sorted(rows, key=lambda i: len(texts[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def window_rows(batch_size: int) -> int:
    """Rows read, sorted by length and scored together."""
    return max(1, batch_size) * SORT_WINDOW


def score_chunk(
    model: Any,
    chunk: inputs.Chunk,
    plan: BatchPlan,
    file_name: str,
    batch_size: int,
    kept_names: dict[str, str],
) -> Any:
    """The chunk's output rows as an Arrow table."""
    import pyarrow as pa

    labels = plan.labels
    status, error = outcomes(chunk, plan.max_chars)
    n = chunk.rows
    proba = np.full((n, len(labels)), np.nan, dtype=np.float32)
    read = np.full(n, np.nan, dtype=np.float32)
    ok = [i for i, s in enumerate(status) if s == OK]
    for batch in length_batches(chunk.texts, ok, batch_size):
        texts = [chunk.texts[i] for i in batch]
        proba[batch] = np.asarray(model.predict_proba(texts))
        read[batch] = model.read_fraction(texts)
    scored = np.zeros(n, dtype=bool)
    scored[ok] = True
    label = np.asarray(labels, dtype=object)[np.nan_to_num(proba).argmax(axis=1)] if n else []
    columns: dict[str, Any] = {
        "file": pa.array([file_name] * n, type=pa.string()),
        "row": pa.array(np.arange(chunk.first_row, chunk.first_row + n, dtype=np.int64)),
    }
    for name, values in chunk.kept.items():
        columns[kept_names[name]] = values
    columns["text"] = pa.array(
        [t if isinstance(t, str) else None for t in chunk.texts], type=pa.string()
    )
    columns["status"] = pa.array(status, type=pa.string())
    columns["label"] = pa.array(list(label), type=pa.string(), mask=~scored)
    columns["confidence"] = pa.array(
        np.nan_to_num(proba).max(axis=1) if n else [], type=pa.float32(), mask=~scored
    )
    columns["read"] = pa.array(read, type=pa.float32(), mask=~scored)
    for j, lab in enumerate(labels):
        columns[prob_column(lab)] = pa.array(proba[:, j], type=pa.float32(), mask=~scored)
    columns["model_version"] = pa.array([plan.version] * n, type=pa.string())
    columns["error"] = pa.array(error, type=pa.string())
    return pa.table(columns)


def score_shard(
    model: Any,
    plan: BatchPlan,
    shard: Shard,
    out: Output,
    reader: inputs.Reader,
    batch_size: int,
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Score one shard into `out` (shard file, then its done record); returns the record.
    `reader` reads the shard's file in chunks of one window (`window_rows(batch_size)`)."""
    import pyarrow as pa

    f = plan.files[shard.file]
    kept_names = {c: kept_name(c, plan.labels) for c in plan.keep}
    start, cpu = time.perf_counter(), time.process_time()
    tmp = out.staging() / f".{shard.name}.{uuid.uuid4().hex[:8]}.parquet"
    counts = dict.fromkeys(STATUSES, 0)
    by_label = dict.fromkeys(plan.labels, 0)
    rows = largest = 0
    writer = None
    pending: list[Any] = []
    try:
        for chunk in reader.chunks(shard.start, shard.stop, shard.offset):
            largest = max(largest, chunk.rows)
            table = score_chunk(model, chunk, plan, f.name, batch_size, kept_names)
            for kind, n in Counter(table.column("status").to_pylist()).items():
                counts[kind] += n
            for lab in table.column("label").drop_null().to_pylist():
                by_label[lab] += 1
            rows += chunk.rows
            pending.append(table)
            if sum(t.num_rows for t in pending) >= ROW_GROUP_ROWS:
                writer = _write(writer, tmp, pa.concat_tables(pending))
                pending = []
            if on_rows is not None:
                on_rows(chunk.rows)
        if rows != shard.rows:
            raise DataError(
                f"{f.name}: shard {shard.name} should hold rows {shard.start}-{shard.stop - 1} "
                f"but {rows} rows were read",
                "the input file changed while the job ran; score it again with --restart",
            )
        if pending:
            writer = _write(writer, tmp, pa.concat_tables(pending))
        assert writer is not None  # a shard has at least one row
        writer.close()
        size, digest = tmp.stat().st_size, sha256_file(tmp)
        out.put(tmp, out.shard_path(shard.name))
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    record = {
        "shard": shard.id,
        "name": shard.name,
        "file": f.name,
        "start": shard.start,
        "stop": shard.stop,
        "rows": rows,
        "status": counts,
        "labels": by_label,
        "model_version": plan.version,
        "size": size,
        "sha256": digest,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),  # this process's CPU time (all its threads)
        "texts_per_sec": round(counts[OK] / seconds, 1) if seconds > 0 else 0.0,
        "largest_chunk_rows": largest,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out.write_json(out.done_path(shard.name), record)
    return record


def _write(writer: Any, path: Path, table: Any) -> Any:
    import pyarrow.parquet as pq

    if writer is None:
        writer = pq.ParquetWriter(path, table.schema, compression="zstd")
    writer.write_table(table)
    return writer


def is_done(out: Output, plan: BatchPlan, shard: Shard) -> dict[str, Any] | None:
    """The shard's done record when the shard is finished (its file has the recorded size and
    sha256, for this model version), else None."""
    record = out.read_json(out.done_path(shard.name))
    if not record or record.get("model_version") != plan.version:
        return None
    if record.get("rows") != shard.rows or (record.get("start"), record.get("stop")) != (
        shard.start,
        shard.stop,
    ):
        return None
    if not out.complete(
        out.shard_path(shard.name), int(record.get("size", -1)), str(record.get("sha256"))
    ):
        return None
    return record
