"""Live traffic in the artifact store: the prediction log, the labelling queue, the labels and
the retraining records. The one place that owns these layouts (the drift sidecar writes them,
the feedback API and the retraining run read them):

    <store>/predictions/date=YYYY-MM-DD/model_version=V/part-<HHMMSS>-<uuid8>.parquet
        every logged prediction: id, request_id, index, time, model_name, model_version, text,
        label, confidence, probabilities (list<float32>), classes (list<string>, their order)
    <store>/labelling/date=YYYY-MM-DD/model_version=V/window-<HHMMSS>-<uuid8>.parquet
        texts of persistently drifting windows for people to label, most uncertain first:
        the prediction columns plus margin (top-1 minus top-2 probability), rank, window_id,
        window_p_value, queued_at
    <store>/labels/...            labelled texts (CSV / JSONL / Parquet with text, label and
                                  optionally id): dropped in by people or written by the
                                  feedback API as labels/feedback/date=YYYY-MM-DD/part-*.parquet
    <store>/retrain/triggers/<UTC time>-<uuid8>.json   one record per retraining trigger
    <store>/retrain/active.json   the local retraining run in progress (pid), if any

`store` is a local directory (the embedded default: `$SENTIOPS_HOME/store`) or `s3://bucket`.
A prediction's `id` is its request's id (the CloudEvent id = the predictor's request id) when
the request had one text, else `<request id>:<index>`.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentiops.config import Settings
from sentiops.errors import StorageError

PREDICTIONS = "predictions"
LABELLING = "labelling"
LABELS = "labels"
RETRAIN = "retrain"
HELD, RELEASED = "held", "released"  # under RETRAIN: held bursts of labels, released ones
#: Files read as labelled data under <store>/labels/.
LABEL_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")


def join(store: str | Path, *parts: str) -> str:
    base = str(store).rstrip("/")
    return "/".join([base, *(p.strip("/") for p in parts)])


def _stamp(now: datetime) -> str:
    return f"{now:%H%M%S}-{uuid.uuid4().hex[:8]}"


def prediction_part(store: str | Path, version: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return join(
        store,
        PREDICTIONS,
        f"date={now:%Y-%m-%d}",
        f"model_version={_safe(version)}",
        f"part-{_stamp(now)}.parquet",
    )


def labelling_part(store: str | Path, version: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return join(
        store,
        LABELLING,
        f"date={now:%Y-%m-%d}",
        f"model_version={_safe(version)}",
        f"window-{_stamp(now)}.parquet",
    )


def trigger_record(store: str | Path, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return join(store, RETRAIN, "triggers", f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}.json")


def label_snapshot(store: str | Path, now: datetime | None = None) -> str:
    """The labels a retraining run learns from, as they stand (revised and withdrawn labels
    resolved): written by the drift sidecar when it triggers the run."""
    now = now or datetime.now(UTC)
    return join(store, RETRAIN, "snapshots", f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}.parquet")


def held_record(
    store: str | Path, version: str, drift_since: datetime, released: bool = False
) -> str:
    """A burst of labels the poisoning guard holds for review (one record per model version and
    drift episode), or the same record once a person released it by moving it to `released/`."""
    name = f"{_safe(version)}-{drift_since:%Y%m%dT%H%M%SZ}.json"
    return join(store, RETRAIN, RELEASED if released else HELD, name)


def _safe(version: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in (version or "unknown"))


# ------------------------------------------------------------------------------ object I/O
@dataclass
class StoredFile:
    uri: str
    modified: datetime
    size: int


def _s3(settings: Settings | None) -> Any:
    from sentiops.store.storage import S3Store  # lazy: pulls minio

    return S3Store(settings)


def put_bytes(data: bytes, uri: str, settings: Settings | None = None) -> str:
    """Write one object atomically (local: temp file + rename; S3: one PUT)."""
    from sentiops.store.storage import is_s3, parse_s3  # lazy: pulls minio

    if is_s3(uri):
        store = _s3(settings)
        bucket, _ = parse_s3(uri)
        store.ensure_bucket(bucket)
        with tempfile.NamedTemporaryFile(suffix=Path(uri).suffix) as tmp:
            tmp.write(data)
            tmp.flush()
            store.upload_file(Path(tmp.name), uri)
        return uri
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:6]}")
    try:
        tmp_path.write_bytes(data)
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc}", "check the store directory") from exc
    return str(path)


def get_bytes(uri: str, settings: Settings | None = None) -> bytes:
    from sentiops.store.storage import get_file, is_s3  # lazy: pulls minio

    if is_s3(uri):
        return get_file(uri, settings).read_bytes()
    try:
        return Path(uri).read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read {uri}: {exc}", "check the store path") from exc


def list_files(prefix: str, settings: Settings | None = None) -> list[StoredFile]:
    """Every file under a local directory or an s3:// prefix (none if it does not exist)."""
    from sentiops.store.storage import is_s3, parse_s3  # lazy: pulls minio

    if is_s3(prefix):
        store = _s3(settings)
        bucket, key = parse_s3(prefix.rstrip("/") + "/")
        try:
            if not store.client.bucket_exists(bucket):
                return []
            return [
                StoredFile(f"s3://{bucket}/{o.object_name}", o.last_modified, int(o.size or 0))
                for o in store.client.list_objects(bucket, prefix=key, recursive=True)
                if o.object_name and not o.is_dir
            ]
        except Exception as exc:  # noqa: BLE001 - translated into a StorageError
            raise store._fail(f"list {prefix}", exc) from exc
    root = Path(prefix)
    if not root.is_dir():
        return []
    return [
        StoredFile(str(p), datetime.fromtimestamp(p.stat().st_mtime, UTC), p.stat().st_size)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    ]


def put_json(obj: Any, uri: str, settings: Settings | None = None) -> str:
    return put_bytes(json.dumps(obj, indent=2, default=str).encode(), uri, settings)


def parquet_bytes(table: Any) -> bytes:
    """A pyarrow Table as Parquet bytes (zstd)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def label_files(
    store: str | Path, since: datetime | None = None, settings: Settings | None = None
) -> list[StoredFile]:
    """Labelled-data files under <store>/labels/ (modified at or after `since`)."""
    return [
        f
        for f in list_files(join(store, LABELS), settings)
        if f.uri.lower().endswith(LABEL_SUFFIXES) and (since is None or f.modified >= since)
    ]
