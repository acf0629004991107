"""Taking labels: each label is joined with the prediction it is about and stored as labelled
training data, and live accuracy per model version is kept and exported.

A request is accepted whole or refused whole, before anything is written: a malformed item or an
unknown label is a 400, an id no prediction has is a 404, a second label for the same id or an
id that more than one logged prediction carries is a 409 — each naming every refused item. An
accepted request is one Parquet part written before the answer, so a restart loses nothing. Two
replicas labelling the same id in the same instant can both accept it; readers keep the first
label of an id (`labels.current_labels`).

A label that names an `origin` (a labelling tool's task: `sentiops.labelling`) may be revised or
withdrawn later by the same origin under the same token; sending a revision that is already
stored changes nothing (`unchanged`), so a tool can send the same state again after a crash or
a retry without storing anything twice.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sentiops.config import MODEL_NAME, Settings
from sentiops.errors import FeedbackError
from sentiops.feedback.labels import (
    COLUMNS,
    RANDOM,
    Item,
    current_labels,
    feedback_prefix,
    sample_of,
    with_later_columns,
)
from sentiops.feedback.live import live_metrics
from sentiops.feedback.predictions import PredictionIndex
from sentiops.security.secrets import SampleKey
from sentiops.store import layout


def _schema() -> Any:
    """A feedback part's columns (COLUMNS) and their types."""
    import pyarrow as pa

    kinds = {"confidence": pa.float32(), "withdrawn": pa.bool_()}
    return pa.schema([(c, kinds.get(c, pa.string())) for c in COLUMNS])


def _part(store: str, now: datetime) -> str:
    return layout.join(
        feedback_prefix(store),
        f"date={now:%Y-%m-%d}",
        f"part-{now:%H%M%S}-{uuid.uuid4().hex[:8]}.parquet",
    )


class Feedback:
    """Takes labels (validated whole, stored durably) and keeps live accuracy per version."""

    def __init__(
        self,
        store: str,
        settings: Settings | None = None,
        index: PredictionIndex | None = None,
        model_name: str = MODEL_NAME,
        sample_key: Any = None,
    ) -> None:
        self.store, self.settings, self.model_name = store, settings, model_name
        self._sample_key = sample_key  # read when a label is stored (a reader needs none)
        self.index = index or PredictionIndex(store, settings)
        self.labelled: set[str] = set()
        #: id -> (origin, token) of its first label; id -> (revision, withdrawn, label) of the
        #: latest row of that origin (labels with an origin can be revised)
        self.owners: dict[str, tuple[str, str]] = {}
        self.latest: dict[str, tuple[str, bool, str]] = {}
        self._label_parts: set[str] = set()
        self._frames: list[Any] = []  # label parts read or written, not yet in _labels
        self._labels: Any = None  # every label part so far, one DataFrame
        self.lock = threading.Lock()

    @property
    def sample_key(self) -> Any:
        """The evaluation sample's key (`SampleKey`), for predictions logged without their
        sample decision."""
        if self._sample_key is None:
            self._sample_key = SampleKey.from_env()
        return self._sample_key

    def stored(self, origin_prefix: str) -> tuple[set[str], dict[str, tuple[str, str, bool]]]:
        """Every labelled id, and id -> (origin, revision, withdrawn) of the labels whose
        origin starts with `origin_prefix`: what a labelling tool has stored so far (the
        parts other replicas wrote are read first)."""
        with self.lock:
            self._refresh_labelled()
            mine = {
                i: (self.owners[i][0], *self.latest[i][:2])
                for i in self.latest
                if self.owners[i][0].startswith(origin_prefix)
            }
            return set(self.labelled), mine

    def _refresh_labelled(self) -> None:
        """Labels so far, by any replica: only feedback parts not read yet are read (parts
        are written once), so a label costs the same with ten or ten thousand parts."""
        import pyarrow.parquet as pq

        from sentiops.store.storage import get_file  # lazy: pulls minio

        for f in layout.list_files(feedback_prefix(self.store), self.settings):
            if f.uri in self._label_parts or not f.uri.endswith(".parquet"):
                continue
            self._add_part(f.uri, pq.read_table(get_file(f.uri, self.settings)).to_pandas())

    def _add_part(self, uri: str, frame: Any) -> None:
        self._label_parts.add(uri)
        self.labelled.update(str(x) for x in frame["id"])
        rows = with_later_columns(frame).sort_values("labelled_at", kind="stable")
        for rid, origin, by, revision, withdrawn, label in zip(
            rows["id"].astype(str),
            rows["origin"],
            rows["labelled_by"],
            rows["revision"],
            rows["withdrawn"],
            rows["label"].astype(str),
            strict=True,
        ):
            owner = self.owners.setdefault(rid, (origin, by))
            if origin and owner == (origin, by):
                self.latest[rid] = (revision, bool(withdrawn), label)
        self._frames.append(frame)

    def _change(self, item: Item, labelled_by: str) -> str:
        """What `item` is to the labels stored so far: `new`, `revised`, `withdrawn`,
        `unchanged` (this revision is stored already, or there is nothing to withdraw) or
        `taken` (labelled before, by another origin or token: refused)."""
        owner = self.owners.get(item.id)
        if owner is None:
            return "unchanged" if item.withdrawn else "new"
        if not item.origin or owner != (item.origin, labelled_by):
            return "taken"
        revision, withdrawn, _ = self.latest[item.id]
        if item.withdrawn:
            return "unchanged" if withdrawn else "withdrawn"
        return "unchanged" if not withdrawn and revision == item.revision else "revised"

    def _all_labels(self) -> Any:
        """Every label (the first of an id), from the parts read so far (call under the lock)."""
        import pandas as pd

        if self._frames:
            parts = [self._labels, *self._frames] if self._labels is not None else self._frames
            self._labels = pd.concat(parts, ignore_index=True)
            self._frames = []
        if self._labels is None:
            return pd.DataFrame(columns=list(COLUMNS))
        return current_labels(self._labels)

    def record(
        self, items: Sequence[Item], source: str = "api", labelled_by: str = ""
    ) -> dict[str, Any]:
        """Store labels for earlier predictions (all or none); FeedbackError (404 unknown id,
        409 duplicate) names every refused item. Revisions and withdrawals of labels with an
        origin are stored as rows of their own; what is stored already is left as it is."""
        import pyarrow as pa

        with self.lock:
            ids = [i.id for i in items]
            found = self.index.find(ids)
            self._check_known(ids, found)
            self._refresh_labelled()
            changes = self._changes(items, labelled_by)
            now = datetime.now(UTC)
            rows = self._rows(items, changes, found, now, source=source, labelled_by=labelled_by)
            uri = _part(self.store, now) if rows else ""
            if rows:
                table = pa.Table.from_pylist(rows, schema=_schema())
                layout.put_bytes(layout.parquet_bytes(table), uri, self.settings)
                self._add_part(uri, table.to_pandas())
        by_version = _count_new_labels(rows, changes)
        if rows:
            self.export_live_metrics(refresh=False)
        counts = {
            k: sum(v == k for v in changes.values()) for k in ("revised", "withdrawn", "unchanged")
        }
        return {"accepted": len(rows), "stored": uri, "by_version": by_version, **counts}

    def _check_known(self, ids: list[str], found: dict[str, Any]) -> None:
        """FeedbackError unless every id names exactly one logged prediction."""
        ambiguous = [i for i in ids if i in self.index.ambiguous]
        if ambiguous:
            raise FeedbackError(
                f"{len(ambiguous)} of {len(ids)} ids match more than one logged prediction: "
                f"{ambiguous[:10]}",
                "a label must name exactly one prediction; these ids cannot be labelled "
                "(ask the operator: the prediction log holds two predictions under one id)",
                409,
                [{"id": i, "error": "matches more than one prediction"} for i in ambiguous],
            )
        unknown = [i for i in ids if i not in found]
        if unknown:
            raise FeedbackError(
                f"{len(unknown)} of {len(ids)} ids match no logged prediction: {unknown[:10]}",
                "an id is the x-request-id (or v2 request id) of a prediction, with "
                "':<index>' for the index-th text of a batch; a prediction from the last "
                "few seconds may not be in the prediction log yet: retry shortly",
                404,
                [{"id": i, "error": "unknown prediction id"} for i in unknown],
            )

    def _changes(self, items: Sequence[Item], labelled_by: str) -> dict[str, str]:
        """What each item changes (`_change`); FeedbackError when an id is labelled already
        (by another tool or task) or twice in `items` (call under the lock)."""
        seen: set[str] = set()
        dups = []
        changes = {}
        for item in items:
            changes[item.id] = self._change(item, labelled_by)
            if changes[item.id] == "taken" or item.id in seen:
                dups.append(item.id)
            seen.add(item.id)
        if dups:
            raise FeedbackError(
                f"{len(dups)} of {len(items)} ids already have a label: {dups[:10]}",
                "each prediction takes one label; send only new ids (a label made in a "
                "labelling tool is revised only by that tool's task, under its token)",
                409,
                [{"id": i, "error": "already labelled"} for i in dups],
            )
        return changes

    def _rows(
        self,
        items: Sequence[Item],
        changes: dict[str, str],
        found: dict[str, Any],
        now: datetime,
        *,
        source: str,
        labelled_by: str,
    ) -> list[dict[str, Any]]:
        """The label rows to store: one per item that changes something, with its prediction."""
        rows: list[dict[str, Any]] = []
        for item in items:
            if changes[item.id] == "unchanged":
                continue
            p = found[item.id]
            label = self.latest[item.id][2] if item.withdrawn else item.label
            rows.append(
                {
                    "id": item.id,
                    "text": str(p.get("text", "")),
                    "label": label,
                    "predicted_label": str(p.get("label", "")),
                    "confidence": float(p.get("confidence") or 0.0),
                    "model_name": str(p.get("model_name") or self.model_name),
                    "model_version": str(p.get("model_version", "")),
                    "predicted_at": str(p.get("time", "")),
                    "labelled_at": now.isoformat(),
                    "source": source,
                    "sample": sample_of(p | {"id": item.id}, self.sample_key),
                    "labelled_by": labelled_by,
                    "client_id": str(p.get("client_id") or ""),
                    "annotator": item.annotator,
                    "origin": item.origin,
                    "revision": item.revision,
                    "withdrawn": item.withdrawn,
                }
            )
        return rows

    def live_metrics(self, refresh: bool = True) -> dict[str, dict[str, float]]:
        """Accuracy (with its 95 % Wilson interval) and macro-F1 of each model version on the
        stored labels of the random evaluation sample (`refresh`: first read the parts other
        replicas wrote since the last call)."""
        with self.lock:
            if refresh:
                self._refresh_labelled()
            df = self._all_labels()
        return live_metrics(df)

    def export_live_metrics(self, refresh: bool = True) -> dict[str, dict[str, float]]:
        return export_live(self.model_name, self.live_metrics(refresh))


def export_live(model_name: str, live: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Set the live-accuracy gauges of `model_name` from `live` (version -> metrics)."""
    from sentiops import metrics  # lazy: pulls prometheus_client

    for version, m in live.items():
        metrics.LIVE_ACCURACY.labels(model_name, version).set(m["accuracy"])
        metrics.LIVE_MACRO_F1.labels(model_name, version).set(m["macro_f1"])
        metrics.LIVE_LABELS.labels(model_name, version).set(m["labels"])
    return live


def _count_new_labels(
    rows: list[dict[str, Any]], changes: dict[str, str]
) -> dict[str, dict[str, int]]:
    """Count the new labels (not revisions) in the feedback counter; per model version: labels,
    correct ones and those of the random evaluation sample."""
    from sentiops import metrics  # lazy: pulls prometheus_client

    by_version: dict[str, dict[str, int]] = {}
    for r in rows:
        if changes[r["id"]] != "new":  # the counter counts labels, not their revisions
            continue
        correct = r["label"] == r["predicted_label"]
        metrics.FEEDBACK.labels(
            r["model_name"], r["model_version"], str(correct).lower(), r["sample"]
        ).inc()
        v = by_version.setdefault(str(r["model_version"]), {"labels": 0, "correct": 0, RANDOM: 0})
        v["labels"] += 1
        v["correct"] += int(correct)
        v[RANDOM] += int(r["sample"] == RANDOM)
    return by_version
