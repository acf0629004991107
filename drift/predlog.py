"""The prediction log: every logged prediction appended to the store as Parquet, partitioned by
date and model version (layout: sentiops.store.layout). Each row says whether the prediction
is in the random evaluation sample (`sample`: random | targeted, decided by the sidecar with
the sample secret: `sentiops.security.secrets.SampleKey`) — labels take that decision.

Rows are buffered in memory and flushed by a background thread when `flush_rows` are waiting or
`flush_seconds` have passed, and on shutdown. A flush that fails (store unreachable) keeps its
rows and is retried with back-off (counted in sentiops_prediction_log_errors_total); past
`max_rows` buffered the oldest rows are dropped and counted. Nothing here ever blocks the
request path. Durability: a crash or kill -9 loses at most the unflushed buffer (at most
`flush_rows` rows or `flush_seconds` of traffic while the store is up); a graceful stop
(SIGTERM) flushes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from sentiops import metrics
from sentiops.store import layout

logger = logging.getLogger("sentiops.drift.predlog")

COLUMNS = (
    "id",
    "request_id",
    "index",
    "time",
    "model_name",
    "model_version",
    "text",
    "label",
    "confidence",
    "probabilities",
    "classes",
    "client_id",
    "sample",
)


def to_table(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("request_id", pa.string()),
            ("index", pa.int32()),
            ("time", pa.timestamp("us", tz="UTC")),
            ("model_name", pa.string()),
            ("model_version", pa.string()),
            ("text", pa.string()),
            ("label", pa.string()),
            ("confidence", pa.float32()),
            ("probabilities", pa.list_(pa.float32())),
            ("classes", pa.list_(pa.string())),
            ("client_id", pa.string()),
            ("sample", pa.string()),
        ]
    )
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=schema)


class PredictionLog(threading.Thread):
    def __init__(
        self,
        store: str,
        flush_rows: int = 1000,
        flush_seconds: float = 60.0,
        max_rows: int = 200_000,
        settings: Any = None,
    ) -> None:
        super().__init__(daemon=True, name="sentiops-prediction-log")
        self.store, self.settings = store, settings
        self.flush_rows, self.flush_seconds, self.max_rows = flush_rows, flush_seconds, max_rows
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.backoff = 0.0
        self.last_flush = time.monotonic()
        self.written: list[str] = []

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            self.rows.extend(rows)
            over = len(self.rows) - self.max_rows
            if over > 0:
                del self.rows[:over]
                metrics.PREDICTION_LOG_ROWS.labels("dropped").inc(over)
            n = len(self.rows)
        metrics.PREDICTION_LOG_BUFFERED.set(n)
        if n >= self.flush_rows:
            self.wake.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            timeout = max(0.05, self.flush_seconds - (time.monotonic() - self.last_flush))
            self.wake.wait(self.backoff or timeout)
            self.wake.clear()
            due = time.monotonic() - self.last_flush >= self.flush_seconds
            with self.lock:
                n = len(self.rows)
            if n and (n >= self.flush_rows or due or self.backoff):
                self.flush()
            elif due:
                self.last_flush = time.monotonic()

    def flush(self) -> bool:
        """Write every buffered row (one Parquet file per date and model version)."""
        with self.lock:
            rows, self.rows = self.rows, []
        if not rows:
            return True
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            stamp: datetime = r["time"]
            groups[(f"{stamp:%Y-%m-%d}", str(r.get("model_version") or "unknown"))].append(r)
        failed: list[dict[str, Any]] = []
        for (_, version), part in sorted(groups.items()):
            uri = layout.prediction_part(self.store, version, part[0]["time"])
            try:
                layout.put_bytes(layout.parquet_bytes(to_table(part)), uri, self.settings)
                self.written.append(uri)
                metrics.PREDICTION_LOG_ROWS.labels("written").inc(len(part))
            except Exception as exc:  # noqa: BLE001 - the store may be down; retried
                failed.extend(part)
                metrics.PREDICTION_LOG_ERRORS.inc()
                logger.warning(
                    "prediction log: could not write %d rows to %s (%s); retrying",
                    len(part),
                    uri,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
        if failed:
            with self.lock:
                self.rows[:0] = failed
            self.backoff = min(60.0, max(1.0, self.backoff * 2))
        else:
            self.backoff = 0.0
            self.last_flush = time.monotonic()
        with self.lock:
            metrics.PREDICTION_LOG_BUFFERED.set(len(self.rows))
        return not failed

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and flush what is buffered (one try, bounded by the store's own
        retries)."""
        self.stopping.set()
        self.wake.set()
        if self.is_alive():
            self.join(timeout)
        self.flush()
