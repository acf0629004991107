"""Tasks for Label Studio: the label config (the platform's label set), the two projects of a
model name, and the tasks built from the store.

- **training queue**: the drift sidecar's labelling queue (`<store>/labelling/` parts: the
  most uncertain texts of persistently drifting windows), pre-annotated with the model's label
  and confidence (Label Studio's prediction `score`); the project samples by uncertainty
  (lowest score first), so the most uncertain text is offered first.
- **evaluation sample**: the prediction log's rows whose stored sample decision is `random`
  (decided by the server with the sample secret, never by anyone who labels), not labelled
  yet, without pre-annotation: showing the model's answer would bias the estimate of its
  accuracy.

A task carries the prediction id, the model version and where the text came from (the window
for the queue, the time of the prediction for the sample); never the sample secret, and the
evaluation task nothing of the model's answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sentiops.config import Settings
from sentiops.feedback.labels import LABELS, RANDOM
from sentiops.store import layout

QUEUE, EVALUATION = "queue", "evaluation"
KINDS = (QUEUE, EVALUATION)
#: The names Label Studio's annotations use for the choice and the text (the label config).
FROM_NAME, TO_NAME = "sentiment", "text"
TITLES = {QUEUE: "training queue", EVALUATION: "evaluation sample"}
DESCRIPTIONS = {
    QUEUE: "The most uncertain texts of drifting traffic, most uncertain first, with the "
    "model's answer as a pre-annotation: correct it where it is wrong. These labels are "
    "training data for the next model.",
    EVALUATION: "A random sample of live predictions, chosen by the platform. Label what the "
    "text says; the model's answer is not shown on purpose. These labels estimate how well "
    "the model does.",
}
#: How the project offers its tasks (Label Studio's sampling names).
SAMPLING = {QUEUE: "Uncertainty sampling", EVALUATION: "Sequential sampling"}
#: How far back the prediction log is read for the evaluation sample.
LOOKBACK_DAYS = 30


def label_config(labels: tuple[str, ...] = LABELS) -> str:
    """Label Studio's labelling interface for one text and one of the platform's labels."""
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    text = f'<Text name="{TO_NAME}" value="$text"/>'
    options = f'name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true"'
    return f"<View>{text}<Choices {options}>{choices}</Choices></View>"


def project_title(model_name: str, kind: str) -> str:
    """The title of a model's project: the installation finds its projects by it."""
    return f"{model_name} · {TITLES[kind]}"


def project_settings(model_name: str, kind: str, overlap: int = 1) -> dict[str, Any]:
    """What a project is created with: title, label config, sampling, annotators per task."""
    return {
        "title": project_title(model_name, kind),
        "description": DESCRIPTIONS[kind],
        "label_config": label_config(),
        "sampling": SAMPLING[kind],
        "maximum_annotations": max(1, overlap),
        "show_collab_predictions": kind == QUEUE,  # the evaluation sample has none to show
    }


def choice(label: str) -> list[dict[str, Any]]:
    """An annotation's (or a prediction's) `result` choosing `label`."""
    return [
        {
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "choices",
            "value": {"choices": [label]},
        }
    ]


def queue_task(row: dict[str, Any]) -> dict[str, Any]:
    """A task of the training queue from a labelling-queue row, pre-annotated with the model's
    label and its confidence."""
    version = str(row.get("model_version") or "")
    data = {
        "text": str(row["text"]),
        "prediction_id": str(row["id"]),
        "model_version": version,
        "window_id": str(row.get("window_id") or ""),
        "rank": int(row.get("rank") or 0),
        "queued_at": str(row.get("queued_at") or ""),
    }
    prediction = {
        "model_version": version,
        "score": float(row.get("confidence") or 0.0),
        "result": choice(str(row["label"])),
    }
    return {"data": data, "predictions": [prediction] if row.get("label") in LABELS else []}


def evaluation_task(row: dict[str, Any]) -> dict[str, Any]:
    """A task of the evaluation sample from a prediction-log row: the text, which prediction
    and model version it is, when it was made; nothing of the model's answer."""
    return {
        "data": {
            "text": str(row["text"]),
            "prediction_id": str(row["id"]),
            "model_version": str(row.get("model_version") or ""),
            "predicted_at": str(row.get("time") or ""),
        }
    }


# ------------------------------------------------------------------------------ the store
@dataclass
class Sources:
    """The texts waiting in the store for a model name, read incrementally (parts are written
    once; only new ones are read): the labelling queue's rows and the prediction log's random
    sample, each in the order they were written."""

    store: str
    model_name: str
    settings: Settings | None = None
    lookback_days: int = LOOKBACK_DAYS
    queue: list[dict[str, Any]] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)
    parts: set[str] = field(default_factory=set)

    def refresh(self) -> tuple[int, int]:
        """Read new parts; returns (queue rows, sample rows) added."""
        before = len(self.queue), len(self.sample)
        for row in self._read(layout.LABELLING):
            self.queue.append(row)
        for row in self._read(layout.PREDICTIONS, recent=True):
            if str(row.get("sample") or "") == RANDOM:
                self.sample.append(row)
        return len(self.queue) - before[0], len(self.sample) - before[1]

    def _read(self, prefix: str, recent: bool = False) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        from sentiops.store.storage import get_file  # lazy: pulls minio

        today = datetime.now(UTC).date()
        dates = {f"date={today - timedelta(days=d):%Y-%m-%d}" for d in range(self.lookback_days)}
        rows: list[dict[str, Any]] = []
        for f in layout.list_files(layout.join(self.store, prefix), self.settings):
            if f.uri in self.parts or not f.uri.endswith(".parquet"):
                continue
            if recent and not any(f"/{d}/" in f.uri for d in dates):
                continue
            table = pq.read_table(get_file(f.uri, self.settings))
            self.parts.add(f.uri)
            part = [
                r
                for r in table.to_pylist()
                if str(r.get("model_name") or self.model_name) == self.model_name
            ]
            rows += sorted(part, key=lambda r: int(r.get("rank") or 0))
        return rows
