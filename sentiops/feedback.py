"""Label feedback for earlier predictions, and live accuracy per model version.

People (or a labelling tool) send `{"id": ..., "label": ...}`, one or many, where `id` is the
prediction's request id (the `x-request-id` the predictor answered with, or the v2 request
`id`; `<request id>:<index>` for the index-th text of a batch). Each label is joined with the
prediction it is about and stored as labelled training data:

    <store>/labels/feedback/date=YYYY-MM-DD/part-<HHMMSS>-<uuid8>.parquet
        id, text, label (the person's), predicted_label, confidence, model_name,
        model_version, predicted_at, labelled_at, source, sample, labelled_by (the name of
        the token the label came with, when writes need one: who labelled what)

(`sentiops.store.layout` owns the store's other layouts; retraining reads `<store>/labels/`.)

The prediction is found in this process's own recent predictions or in the prediction log the
drift sidecar writes to the store (any replica, any revision, days later). A request is
accepted whole or refused whole, before anything is written: a malformed item or an unknown
label is a 400, an id no prediction has is a 404, a second label for the same id is a 409 —
each naming every refused item. An accepted request is one Parquet part written before the
answer, so a restart loses nothing. Two replicas labelling the same id in the same instant can
both accept it; readers keep the first label of an id (`read_labels`).

Two kinds of label, told apart by `sample`: a prediction whose request id falls in the
**random evaluation sample** (`in_eval_sample`: a hash of the id below the rate, so every
model version and every hour is sampled alike, and no labeller chooses which texts are in it)
is `random`; every other label (e.g. the drift sidecar's queue of the most uncertain texts,
chosen to teach the next model) is `targeted`. Only `random` labels estimate how well a model
does on live traffic: live accuracy and macro-F1 per model version (computed from every stored
label, so every replica exports the same numbers, and exported as gauges), the canary judge's
per-step `sentiops_feedback_total{correct, sample="random"}` and the gate's live test share.
`targeted` labels are training data only. The sidecar leaves the evaluation sample out of its
labelling queue, so what is labelled of the sample is not chosen by uncertainty either.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sentiops.config import MODEL_NAME, Settings, eval_sample_rate
from sentiops.errors import FeedbackError
from sentiops.store import layout

FEEDBACK = "feedback"
#: Most labels one request may carry.
MAX_ITEMS = 1000
#: How far back the prediction log is searched for the prediction a label is about.
LOOKBACK_DAYS = 30
#: Labels the platform knows (a model trained on two of them can still get the third).
LABELS = ("negative", "neutral", "positive")
COLUMNS = (
    "id",
    "text",
    "label",
    "predicted_label",
    "confidence",
    "model_name",
    "model_version",
    "predicted_at",
    "labelled_at",
    "source",
    "sample",
    "labelled_by",
)
RANDOM, TARGETED = "random", "targeted"


def in_eval_sample(request_id: str, rate: float | None = None) -> bool:
    """Is this prediction in the random evaluation sample? A hash of its id, uniform in [0, 1),
    below `rate` (default: SENTIOPS_EVAL_SAMPLE_RATE): the same answer in every process, and
    independent of the text, the model and the time."""
    rate = eval_sample_rate() if rate is None else rate
    digest = hashlib.sha256(str(request_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def random_sample(df: Any) -> Any:
    """The labels of the random evaluation sample (older parts without `sample`: none)."""
    if "sample" not in df.columns:
        return df.iloc[0:0]
    return df[df["sample"] == RANDOM]


@dataclass(frozen=True)
class Item:
    id: str
    label: str


def feedback_prefix(store: str) -> str:
    return layout.join(store, layout.LABELS, FEEDBACK)


def _part(store: str, now: datetime) -> str:
    return layout.join(
        feedback_prefix(store),
        f"date={now:%Y-%m-%d}",
        f"part-{now:%H%M%S}-{uuid.uuid4().hex[:8]}.parquet",
    )


# ------------------------------------------------------------------------------ parsing
def parse_items(body: Any, max_items: int = MAX_ITEMS) -> list[Item]:
    """`{"id", "label"}`, a list of them, or `{"feedback": [...]}` -> items; FeedbackError
    (400) naming every malformed item."""
    raw = body.get("feedback", body) if isinstance(body, dict) else body
    raw = [raw] if isinstance(raw, dict) else raw
    example = '{"id": "<request id>", "label": "positive"} or a list of them'
    if not isinstance(raw, list) or not raw:
        raise FeedbackError("expected a label or a non-empty list of labels", f"send {example}")
    if len(raw) > max_items:
        raise FeedbackError(
            f"{len(raw)} labels in one request exceed the limit of {max_items}",
            f"send at most {max_items} per request",
        )
    problems, items = [], []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            problems.append({"index": i, "error": "not an object"})
            continue
        rid, label = entry.get("id"), entry.get("label")
        if not isinstance(rid, str) or not rid.strip():
            problems.append({"index": i, "error": 'missing or empty "id" (a string)'})
        elif not isinstance(label, str) or label not in LABELS:
            problems.append(
                {"index": i, "id": rid, "error": f"label {label!r} is not one of {list(LABELS)}"}
            )
        else:
            items.append(Item(rid.strip(), label))
    if problems:
        shown = "; ".join(_describe(p) for p in problems[:3])
        raise FeedbackError(
            f"{len(problems)} of {len(raw)} labels are malformed: {shown}",
            f"send {example}",
            400,
            problems,
        )
    return items


def _describe(problem: dict[str, Any]) -> str:
    where = f"item {problem['index']}"
    if "id" in problem:
        where += f" (id {problem['id']})"
    return f"{where}: {problem['error']}"


# ------------------------------------------------------------------------------ lookups
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
        from sentiops import metrics

        with self.lock:
            for row in rows:
                rid = str(row["id"])
                old = self.rows.pop(rid, None)
                if old is not None:
                    self.bytes -= self._size(old)
                self.rows[rid] = row
                self.bytes += self._size(row)
            while self.rows and (len(self.rows) > self.capacity or self.bytes > self.max_bytes):
                self.bytes -= self._size(self.rows.popitem(last=False)[1])
            metrics.PREDICTION_MEMORY_ROWS.set(len(self.rows))
            metrics.PREDICTION_MEMORY_BYTES.set(self.bytes)

    def refresh(self) -> int:
        """Read prediction-log parts not read yet (of the last `lookback_days` days)."""
        import pyarrow.parquet as pq

        from sentiops.store.storage import get_file

        self._refreshed = time.monotonic()
        today = datetime.now(UTC).date()
        dates = {f"date={today - timedelta(days=d):%Y-%m-%d}" for d in range(self.lookback_days)}
        new = 0
        for f in layout.list_files(layout.join(self.store, layout.PREDICTIONS), self.settings):
            if f.uri in self.seen or not f.uri.endswith(".parquet"):
                continue
            if not any(f"/{d}/" in f.uri for d in dates):
                continue
            cols = ["id", "text", "label", "confidence", "model_name", "model_version", "time"]
            table = pq.read_table(get_file(f.uri, self.settings), columns=cols)
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


def read_labels(store: str, settings: Settings | None = None) -> Any:
    """Every stored feedback label as one DataFrame (COLUMNS; the first label of an id)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from sentiops.store.storage import get_file

    files = [
        f for f in layout.list_files(feedback_prefix(store), settings) if f.uri.endswith(".parquet")
    ]
    if not files:
        return pd.DataFrame(columns=list(COLUMNS))
    frames = [pq.read_table(get_file(f.uri, settings)).to_pandas() for f in files]
    return _first_label_per_id(pd.concat(frames, ignore_index=True))


def live_metrics(labels: Any) -> dict[str, dict[str, float]]:
    """Per model version, from the random evaluation sample of `labels` (COLUMNS): labels
    (the sample size), accuracy and its 95 % Wilson interval, macro-F1."""
    from sentiops.scoring import macro_f1, wilson_interval

    out: dict[str, dict[str, float]] = {}
    for version, g in random_sample(labels).groupby("model_version"):
        gold, pred = g["label"].tolist(), g["predicted_label"].tolist()
        correct = int((g["label"] == g["predicted_label"]).sum())
        low, high = wilson_interval(correct, len(g))
        out[str(version)] = {
            "labels": float(len(g)),
            "accuracy": correct / len(g),
            "accuracy_low": low,
            "accuracy_high": high,
            "macro_f1": macro_f1(gold, pred, sorted(set(gold) | set(pred))),
        }
    return out


def review_burst(labels: Any, max_token_share: float = 1.0, max_excess: float = 0.3,
                 alpha: float = 0.001, min_labels: int = 30) -> dict[str, Any]:  # fmt: skip
    """The poisoning guard over a burst of new labels (COLUMNS; other label files count as
    `unauthenticated`): per token, how many labels and how often they disagree with the
    model, and the reasons to hold the burst for review instead of retraining on it:

    - one token gave more than `max_token_share` of the burst (1.0: off; set e.g. 0.9 where
      several annotator teams label);
    - one token's labels disagree with the model far more than every other token's on the
      same traffic: by more than `max_excess`, one-sided Fisher p < `alpha`, each side with at
      least `min_labels` labels.
    """
    from scipy.stats import fisher_exact

    by = labels["labelled_by"].fillna("") if "labelled_by" in labels.columns else None
    names = (by.replace("", "unauthenticated") if by is not None
             else ["unauthenticated"] * len(labels))  # fmt: skip
    disagree = ((labels["label"] != labels["predicted_label"]) if "predicted_label" in
                labels.columns else labels["label"] != labels["label"])  # fmt: skip
    frame = {"token": list(names), "disagree": list(disagree.astype(bool))}
    import pandas as pd

    df = pd.DataFrame(frame)
    tokens = {
        str(name): {"labels": len(g), "disagreement": round(float(g["disagree"].mean()), 4)}
        for name, g in df.groupby("token")
    }
    hold: list[str] = []
    total = len(df)
    for name, t in tokens.items():
        share = t["labels"] / total if total else 0.0
        if share > max_token_share:
            hold.append(f"{share:.0%} of the {total} new labels come from one token ({name}); "
                        f"the limit is {max_token_share:.0%}")  # fmt: skip
        rest = df[df["token"] != name]
        if t["labels"] < min_labels or len(rest) < min_labels:
            continue
        mine = df[df["token"] == name]
        a, b = int(mine["disagree"].sum()), int(rest["disagree"].sum())
        excess = a / len(mine) - b / len(rest)
        p = float(fisher_exact([[a, len(mine) - a], [b, len(rest) - b]],
                               alternative="greater").pvalue)  # fmt: skip
        if excess > max_excess and p < alpha:
            hold.append(f"the labels of token {name} disagree with the model {a / len(mine):.0%} "
                        f"of the time, the others' {b / len(rest):.0%} (p={p:.2g})")  # fmt: skip
    return {"tokens": tokens, "hold": hold}


def _first_label_per_id(df: Any) -> Any:
    """One row per prediction id: the earliest label (a later one for the same id is ignored)."""
    df = df.sort_values("labelled_at", kind="stable")
    return df.drop_duplicates("id", keep="first").reset_index(drop=True)


# ------------------------------------------------------------------------------ the store
class Feedback:
    """Takes labels (validated whole, stored durably) and keeps live accuracy per version."""

    def __init__(
        self,
        store: str,
        settings: Settings | None = None,
        index: PredictionIndex | None = None,
        model_name: str = MODEL_NAME,
    ) -> None:
        self.store, self.settings, self.model_name = store, settings, model_name
        self.rate = eval_sample_rate()
        self.index = index or PredictionIndex(store, settings)
        self.labelled: set[str] = set()
        self._label_parts: set[str] = set()
        self._frames: list[Any] = []  # label parts read or written, not yet in _labels
        self._labels: Any = None  # every label part so far, one DataFrame
        self.lock = threading.Lock()

    def _refresh_labelled(self) -> None:
        """Labels so far, by any replica: only feedback parts not read yet are read (parts
        are written once), so a label costs the same with ten or ten thousand parts."""
        import pyarrow.parquet as pq

        from sentiops.store.storage import get_file

        for f in layout.list_files(feedback_prefix(self.store), self.settings):
            if f.uri in self._label_parts or not f.uri.endswith(".parquet"):
                continue
            self._add_part(f.uri, pq.read_table(get_file(f.uri, self.settings)).to_pandas())

    def _add_part(self, uri: str, frame: Any) -> None:
        self._label_parts.add(uri)
        self.labelled.update(str(x) for x in frame["id"])
        self._frames.append(frame)

    def _all_labels(self) -> Any:
        """Every label (the first of an id), from the parts read so far (call under the lock)."""
        import pandas as pd

        if self._frames:
            parts = [self._labels, *self._frames] if self._labels is not None else self._frames
            self._labels = pd.concat(parts, ignore_index=True)
            self._frames = []
        if self._labels is None:
            return pd.DataFrame(columns=list(COLUMNS))
        return _first_label_per_id(self._labels)

    def record(
        self, items: Sequence[Item], source: str = "api", labelled_by: str = ""
    ) -> dict[str, Any]:
        """Store labels for earlier predictions (all or none); FeedbackError (404 unknown id,
        409 duplicate) names every refused item."""
        import pyarrow as pa

        from sentiops import metrics

        with self.lock:
            ids = [i.id for i in items]
            found = self.index.find(ids)
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
            self._refresh_labelled()
            seen: set[str] = set()
            dups = []
            for i in ids:
                if i in self.labelled or i in seen:
                    dups.append(i)
                seen.add(i)
            if dups:
                raise FeedbackError(
                    f"{len(dups)} of {len(ids)} ids already have a label: {dups[:10]}",
                    "each prediction takes one label; send only new ids",
                    409,
                    [{"id": i, "error": "already labelled"} for i in dups],
                )
            now = datetime.now(UTC)
            rows: list[dict[str, Any]] = []
            for item in items:
                p = found[item.id]
                rows.append(
                    {
                        "id": item.id,
                        "text": str(p.get("text", "")),
                        "label": item.label,
                        "predicted_label": str(p.get("label", "")),
                        "confidence": float(p.get("confidence") or 0.0),
                        "model_name": str(p.get("model_name") or self.model_name),
                        "model_version": str(p.get("model_version", "")),
                        "predicted_at": str(p.get("time", "")),
                        "labelled_at": now.isoformat(),
                        "source": source,
                        "sample": RANDOM if in_eval_sample(item.id, self.rate) else TARGETED,
                        "labelled_by": labelled_by,
                    }
                )
            uri = _part(self.store, now)
            table = pa.Table.from_pylist(
                rows,
                schema=pa.schema(
                    [(c, pa.string()) if c != "confidence" else (c, pa.float32()) for c in COLUMNS]
                ),
            )
            layout.put_bytes(layout.parquet_bytes(table), uri, self.settings)
            self._add_part(uri, table.to_pandas())
        by_version: dict[str, dict[str, int]] = {}
        for r in rows:
            correct = r["label"] == r["predicted_label"]
            metrics.FEEDBACK.labels(
                r["model_name"], r["model_version"], str(correct).lower(), r["sample"]
            ).inc()
            v = by_version.setdefault(
                str(r["model_version"]), {"labels": 0, "correct": 0, RANDOM: 0}
            )
            v["labels"] += 1
            v["correct"] += int(correct)
            v[RANDOM] += int(r["sample"] == RANDOM)
        self.export_live_metrics(refresh=False)
        return {"accepted": len(rows), "stored": uri, "by_version": by_version}

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
        from sentiops import metrics

        live = self.live_metrics(refresh)
        for version, m in live.items():
            metrics.LIVE_ACCURACY.labels(self.model_name, version).set(m["accuracy"])
            metrics.LIVE_MACRO_F1.labels(self.model_name, version).set(m["macro_f1"])
            metrics.LIVE_LABELS.labels(self.model_name, version).set(m["labels"])
        return live
