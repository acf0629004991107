"""Estimated performance in the sidecar: per model version and window, from the calibrated
probabilities the predictor served (`sentiops.estimation.performance`), before any label.

    window()     a tested window's estimate: accuracy, per-class recall and macro-F1 with their
                 95 % intervals, set as gauges and returned for the window's record (`/status`,
                 the labelling queue), beside the version's validation accuracy
    Labelled     the estimate's own error where labels exist: the feedback API's label parts
                 in the store (read once each), on the random evaluation sample, per version:
                 mean served top probability minus realized accuracy (`sentiops_estimate_error`)

The estimate assumes p(label | text) did not change; under a shift to another domain it is too
high (measured: docs/estimation.md, `make bench-estimate`). Its interval is the window's own
sampling noise, not that bias.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from sentiops import metrics
from sentiops.estimation import performance
from sentiops.feedback.labels import RANDOM
from sentiops.store import layout

logger = logging.getLogger("sentiops.drift.estimate")
#: What a feedback label part holds that the estimate's error needs.
LABEL_COLUMNS = ("model_version", "sample", "label", "predicted_label", "confidence")


def reference_accuracy(detector: Any) -> float | None:
    """The model version's accuracy on its validation rows like the traffic (recorded when it
    was packaged: `calibration.reference`, else the validation split's accuracy), read from
    the model directory the detector came from; None for a bare detector."""
    path = getattr(detector, "path", None)  # <model>/drift, or a bare detector's folder
    if path is None:
        return None
    manifest_path = Path(path).parent / "model.json"
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    ref = (manifest.get("calibration") or {}).get("reference") or {}
    value = ref.get("accuracy")
    if value is None:
        value = ((manifest.get("metrics") or {}).get("validation") or {}).get("accuracy")
    return float(value) if value is not None else None


def window(
    model_name: str, version: str, labels: list[str], probs: np.ndarray, reference: float | None
) -> dict[str, Any]:
    """The window's estimate (exported as gauges) for its record."""
    est = performance.estimate(probs, labels)
    series = (model_name, version)
    metrics.ESTIMATED_ACCURACY.labels(*series).set(est.accuracy.value)
    metrics.ESTIMATED_ACCURACY_LOW.labels(*series).set(est.accuracy.low)
    metrics.ESTIMATED_ACCURACY_HIGH.labels(*series).set(est.accuracy.high)
    metrics.ESTIMATED_MACRO_F1.labels(*series).set(est.macro_f1.value)
    metrics.ESTIMATED_MACRO_F1_LOW.labels(*series).set(est.macro_f1.low)
    metrics.ESTIMATED_MACRO_F1_HIGH.labels(*series).set(est.macro_f1.high)
    for label, recall in est.recall.items():
        metrics.ESTIMATED_RECALL.labels(*series, label).set(recall.value)
    record: dict[str, Any] = {
        "n": est.n,
        "accuracy": est.accuracy.to_dict(),
        "macro_f1": est.macro_f1.to_dict(),
        "recall": {k: round(v.value, 4) for k, v in est.recall.items()},
    }
    if reference is not None:
        metrics.VALIDATION_ACCURACY.labels(*series).set(reference)
        record["validation_accuracy"] = round(reference, 4)
        record["drop"] = round(reference - est.accuracy.value, 4)
    return record


class Labelled:
    """The estimate's error on labelled predictions, refreshed at most every `every` seconds
    from the feedback API's label parts in `store` (each part read once: parts are never
    rewritten). `every` 0: off."""

    def __init__(self, store: str, model_name: str, every: float = 60.0) -> None:
        self.store, self.model_name, self.every = store, model_name, every
        self.parts: dict[str, Any] = {}  # uri -> rows of the random sample with a confidence
        self.last = 0.0
        self.lock = threading.Lock()
        self.errors: dict[str, dict[str, float]] = {}

    def due(self) -> bool:
        return self.every > 0 and time.monotonic() - self.last >= self.every

    def refresh(self, force: bool = False) -> dict[str, dict[str, float]]:
        """Read new label parts, then per model version: labels, estimated and realized
        accuracy, error (also the gauges). Never raises: an unreadable store is logged."""
        if not (force or self.due()) or not self.lock.acquire(blocking=False):
            return self.errors
        try:
            self.last = time.monotonic()
            self._read_new()
            self.errors = self._errors()
        except Exception as exc:  # noqa: BLE001 - the store may be down; retried later
            logger.warning("estimate error: cannot read the labels: %s", exc)
        finally:
            self.lock.release()
        return self.errors

    def _read_new(self) -> None:
        for f in layout.label_files(self.store):
            if f.uri in self.parts or not f.uri.endswith(".parquet"):
                continue
            self.parts[f.uri] = _sample_rows(f.uri)

    def _errors(self) -> dict[str, dict[str, float]]:
        import pandas as pd

        frames = [x for x in self.parts.values() if x is not None and len(x)]
        if not frames:
            return {}
        rows = pd.concat(frames, ignore_index=True)
        out: dict[str, dict[str, float]] = {}
        for version, g in rows.groupby("model_version"):
            err = performance.labelled_error(g["confidence"], g["label"] == g["predicted_label"])
            if err is None:
                continue
            out[str(version)] = err
            series = (self.model_name, str(version))
            metrics.ESTIMATE_ERROR.labels(*series).set(err["error"])
            metrics.ESTIMATE_ERROR_LABELS.labels(*series).set(err["labels"])
        return out


def _sample_rows(uri: str) -> Any:
    """The random-sample labels of one part that carry the served confidence (hand-written
    label files have none: None)."""
    import pyarrow.parquet as pq

    from sentiops.store.storage import get_file  # lazy: pulls minio

    try:
        local = get_file(uri)
        if not set(LABEL_COLUMNS) <= set(pq.read_schema(local).names):
            return None
        df = pq.read_table(local, columns=list(LABEL_COLUMNS)).to_pandas()
    except Exception as exc:  # noqa: BLE001 - an unreadable part is skipped, not counted
        logger.warning("estimate error: cannot read %s: %s", uri, str(exc).splitlines()[0])
        return None
    df = df[(df["sample"] == RANDOM) & df["confidence"].notna()]
    return df.assign(confidence=df["confidence"].astype(np.float64))
