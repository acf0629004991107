"""The predictions labels are about: id -> the prediction (text, label, model version, sample,
...), from this process's own recent predictions and the prediction log the drift sidecar
writes to the store (any replica, any revision, days later). Ids are issued by the predictors
and never collide; an id that nonetheless arrives with two different predictions (another
text or model version) is marked `ambiguous` and can never be labelled."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sentiops.config import Settings
from sentiops.store import layout

#: How far back the prediction log is searched for the prediction a label is about.
LOOKBACK_DAYS = 30
#: What is kept of a prediction (older log parts lack `client_id` and `sample`).
COLUMNS = (
    "id",
    "text",
    "label",
    "confidence",
    "model_name",
    "model_version",
    "time",
    "client_id",
    "sample",
)


def _differ(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two records of one id that are not the same prediction."""
    return any(str(a.get(k, "")) != str(b.get(k, "")) for k in ("text", "model_version"))


class PredictionIndex:
    """id -> the prediction (text, label, model version, ...): this process's own recent
    predictions (`remember`) and the prediction log in the store, read incrementally (parts
    are written once; only new ones are read)."""

    def __init__(
        self,
        store: str,
        settings: Settings | None = None,
        lookback_days: int = LOOKBACK_DAYS,
        capacity: int = 200_000,
        max_bytes: int = 256 * 1024 * 1024,
        min_refresh_seconds: float = 1.0,
    ) -> None:
        self.store, self.settings = store, settings
        self.lookback_days, self.capacity, self.max_bytes = lookback_days, capacity, max_bytes
        self.bytes = 0
        self.min_refresh = min_refresh_seconds
        self.rows: OrderedDict[str, dict[str, Any]] = OrderedDict()
        #: ids seen with two different predictions (bounded like `rows`)
        self.ambiguous: OrderedDict[str, None] = OrderedDict()
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self._refreshed = 0.0

    @staticmethod
    def _size(row: dict[str, Any]) -> int:
        """Estimated bytes of a remembered prediction (its strings plus the dict's overhead)."""
        return 240 + sum(len(v) for v in row.values() if isinstance(v, str))

    def remember(self, rows: Iterable[dict[str, Any]]) -> None:
        """Keep predictions for feedback to join: at most `capacity` rows and `max_bytes`
        (oldest out first; they are still found in the prediction log in the store)."""
        from sentiops import metrics  # lazy: pulls prometheus_client

        with self.lock:
            for row in rows:
                rid = str(row["id"])
                old = self.rows.pop(rid, None)
                if old is not None:
                    self.bytes -= self._size(old)
                    if _differ(old, row):
                        self.ambiguous[rid] = None
                        while len(self.ambiguous) > self.capacity:
                            self.ambiguous.popitem(last=False)
                self.rows[rid] = row
                self.bytes += self._size(row)
            while self.rows and (len(self.rows) > self.capacity or self.bytes > self.max_bytes):
                self.bytes -= self._size(self.rows.popitem(last=False)[1])
            metrics.PREDICTION_MEMORY_ROWS.set(len(self.rows))
            metrics.PREDICTION_MEMORY_BYTES.set(self.bytes)

    def refresh(self) -> int:
        """Read prediction-log parts not read yet (of the last `lookback_days` days)."""
        import pyarrow.parquet as pq

        from sentiops.store.storage import get_file  # lazy: pulls minio

        self._refreshed = time.monotonic()
        today = datetime.now(UTC).date()
        dates = {f"date={today - timedelta(days=d):%Y-%m-%d}" for d in range(self.lookback_days)}
        new = 0
        for f in layout.list_files(layout.join(self.store, layout.PREDICTIONS), self.settings):
            if f.uri in self.seen or not f.uri.endswith(".parquet"):
                continue
            if not any(f"/{d}/" in f.uri for d in dates):
                continue
            table = pq.read_table(get_file(f.uri, self.settings))
            table = table.select([c for c in COLUMNS if c in table.column_names])
            self.remember(table.to_pylist())
            self.seen.add(f.uri)
            new += table.num_rows
        return new

    def find(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        with self.lock:
            found = {i: self.rows[i] for i in ids if i in self.rows}
        if len(found) < len(set(ids)) and time.monotonic() - self._refreshed >= self.min_refresh:
            self.refresh()
            with self.lock:
                found = {i: self.rows[i] for i in ids if i in self.rows}
        return found
