"""Labels for a shadow's predictions: live accuracy of a model that answers no client.

In a shadow rollout (`sentiops.rollout.steps`, mode shadow) the candidate gets a copy of live
requests and its answers are thrown away. A label is given for what a client was answered, so
it names the *stable* prediction's request id and is stored once, joined with that prediction
(`sentiops.feedback.intake`) — training data never counts a text twice. The shadow joins the
same labels with its own answers:

- the mirror copies the request with its `x-request-id` (on a cluster the gateway's, which
  stable keeps as the prediction's `client_id`; locally the prediction id stable answered
  with); the shadow issues its own prediction ids like any predictor and keeps the copy's id
  as its prediction's `client_id`, so a label names it by `id` (locally) or `client_id` (the
  stored label carries the stable prediction's `client_id`);
- the shadow keeps its own predictions in memory (`remember`; bounded, like the predictor's
  `PredictionIndex`) and never writes them to the prediction log (a second prediction under
  the same id there would let a label join the wrong version);
- every few seconds it reads the label parts written since the last read (`refresh`; parts
  are written once) and, for each label whose id (or client id) *and text* match one of its
  predictions (a reused id with another text never matches), counts
  `sentiops_feedback_total{model_version=<shadow>, correct, sample}` — the series the canary
  judge reads per step — and keeps live accuracy per version for the gauges.

Which labels count as the random evaluation sample is what the label says (`sample`, decided
for the stable prediction it was given for: `sentiops.security.secrets.SampleKey`), so a
shadow's sampled predictions are exactly the mirrored share of the stable's sample: labelled
the same way, by the same people, at no extra cost. A label that
arrives before the shadow's copy was answered does not count (the mirror sends copies at once;
labels come seconds to days later). The shadow takes no labels itself: `record` refuses them.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from sentiops.config import MODEL_NAME, Settings
from sentiops.errors import FeedbackError
from sentiops.feedback.intake import export_live
from sentiops.feedback.labels import RANDOM, TARGETED, Item, feedback_prefix
from sentiops.scoring import macro_f1, wilson_interval
from sentiops.store import layout


class ShadowLabels:
    """Joins stored labels with a shadow's own predictions and counts them per version."""

    shadow = True

    def __init__(
        self,
        store: str,
        settings: Settings | None = None,
        model_name: str = MODEL_NAME,
        capacity: int = 200_000,
    ) -> None:
        self.store, self.settings, self.model_name = store, settings, model_name
        self.capacity = capacity
        # the copy's id (its client id) -> (text, predicted label, model version) of this
        # shadow's own answers
        self.rows: OrderedDict[str, tuple[str, str, str]] = OrderedDict()
        self.counted: set[str] = set()
        self.parts: set[str] | None = None  # label parts read so far (None: not listed yet)
        # version -> (gold, predicted) -> labels of the random sample
        self.live: dict[str, Counter[tuple[str, str]]] = {}
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ the shadow's answers
    def remember(self, rows: Iterable[dict[str, Any]]) -> None:
        """The shadow's predictions (`serving.feedback.prediction_rows`), at most `capacity`."""
        with self.lock:
            for row in rows:
                rid = str(row.get("client_id") or row["id"])
                self.rows.pop(rid, None)
                self.rows[rid] = (
                    str(row.get("text", "")),
                    str(row.get("label", "")),
                    str(row.get("model_version", "")),
                )
            while len(self.rows) > self.capacity:
                self.counted.discard(self.rows.popitem(last=False)[0])

    # ------------------------------------------------------------------ the labels
    def refresh(self) -> int:
        """Read the label parts written since the last call; count the labels of this
        shadow's predictions. The first call only notes the parts already there (labels of
        predictions made before this shadow started). Returns the labels counted."""
        import pyarrow.parquet as pq

        from sentiops.store.storage import get_file  # lazy: pulls minio

        files = [
            f.uri
            for f in layout.list_files(feedback_prefix(self.store), self.settings)
            if f.uri.endswith(".parquet")
        ]
        if self.parts is None:
            self.parts = set(files)
            return 0
        counted = 0
        for uri in files:
            if uri in self.parts:
                continue
            self.parts.add(uri)
            table = pq.read_table(get_file(uri, self.settings))
            keep = [
                c for c in ("id", "client_id", "text", "label", "sample") if c in table.column_names
            ]
            counted += self.count(table.select(keep).to_pylist())
        return counted

    def count(self, labels: Sequence[dict[str, Any]]) -> int:
        """Count `labels` (id, client_id, text, label, sample) that name one of this
        shadow's predictions."""
        from sentiops import metrics  # lazy: pulls prometheus_client

        n = 0
        with self.lock:
            for label in labels:
                rid = next(
                    (
                        k
                        for k in (str(label["id"]), str(label.get("client_id") or ""))
                        if k and k in self.rows
                    ),
                    "",
                )
                mine = self.rows.get(rid)
                if mine is None or rid in self.counted or mine[0] != str(label.get("text", "")):
                    continue
                self.counted.add(rid)
                _, predicted, version = mine
                gold = str(label["label"])
                sample = str(label.get("sample") or TARGETED)
                metrics.FEEDBACK.labels(
                    self.model_name, version, str(gold == predicted).lower(), sample
                ).inc()
                if sample == RANDOM:
                    self.live.setdefault(version, Counter())[(gold, predicted)] += 1
                n += 1
        return n

    def live_metrics(self, refresh: bool = True) -> dict[str, dict[str, float]]:
        """Accuracy (95 % Wilson interval) and macro-F1 of this shadow on the labels of the
        random evaluation sample counted since it started."""
        if refresh:
            self.refresh()
        out: dict[str, dict[str, float]] = {}
        with self.lock:
            for version, pairs in self.live.items():
                gold = [g for (g, _), n in pairs.items() for _ in range(n)]
                pred = [p for (_, p), n in pairs.items() for _ in range(n)]
                labels = len(gold)
                correct = sum(n for (g, p), n in pairs.items() if g == p)
                low, high = wilson_interval(correct, labels)
                out[version] = {
                    "labels": float(labels),
                    "correct": float(correct),
                    "accuracy": correct / labels,
                    "accuracy_low": low,
                    "accuracy_high": high,
                    "macro_f1": macro_f1(gold, pred, sorted(set(gold) | set(pred))),
                }
        return out

    def export_live_metrics(self, refresh: bool = True) -> dict[str, dict[str, float]]:
        """What `serving.feedback.Refresher` calls every few seconds."""
        return export_live(self.model_name, self.live_metrics(refresh))

    def record(
        self, items: Sequence[Item], source: str = "api", labelled_by: str = ""
    ) -> dict[str, Any]:
        raise FeedbackError(
            "this predictor is a shadow: its answers reach no client, so it takes no labels",
            "send labels to the serving predictor (the model's URL); the shadow counts the "
            "labels of the requests it was copied from the store",
            404,
        )
