"""The feedback store's live accuracy: every label counted once, each label part read once
(a predictor re-exports live accuracy after every label and every 30 s)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sentiops.errors import FeedbackError
from sentiops.feedback.intake import Feedback
from sentiops.feedback.labels import Item
from sentiops.feedback.predictions import PredictionIndex


def _index(store: str, n: int) -> PredictionIndex:
    index = PredictionIndex(store)
    index.remember(
        {
            "id": f"r{i}",
            "text": f"text {i}",
            "label": "positive",
            "confidence": 0.9,
            "model_name": "sentiment",
            "model_version": "1" if i < 30 else "2",
            "time": "2026-12-02T00:00:00+00:00",
        }
        for i in range(n)
    )
    return index


def test_each_label_part_is_read_once_and_every_label_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = str(tmp_path / "store")
    index = _index(store, 40)
    here, there = Feedback(store, index=index), Feedback(store, index=index)  # two replicas
    for i in range(20):
        here.record([Item(f"r{i}", "positive" if i % 2 else "negative")])
    there.record([Item("r30", "positive"), Item("r31", "negative")])
    reads: list[object] = []
    real = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: reads.append(a) or real(*a, **k))
    live = here.live_metrics()
    assert live["1"]["labels"] == 20 and live["1"]["accuracy"] == pytest.approx(0.5)
    assert {k: live["2"][k] for k in ("labels", "accuracy", "macro_f1")} == {
        "labels": 2.0,
        "accuracy": 0.5,
        "macro_f1": pytest.approx(1 / 3),
    }
    assert len(reads) == 1  # only the other replica's part; its own 20 were never re-read
    here.record([Item("r21", "positive")])
    assert here.live_metrics()["1"]["labels"] == 21 and len(reads) == 1
    with pytest.raises(FeedbackError) as exc:  # the other replica's label is known here too
        here.record([Item("r30", "neutral")])
    assert exc.value.status == 409
    fresh = Feedback(store, index=index)  # a restarted replica reads everything once
    assert fresh.live_metrics() == here.live_metrics()


def test_only_the_random_evaluation_sample_estimates_live_accuracy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Labels of ids outside the evaluation sample (e.g. the most uncertain texts, queued for
    training) are stored as `targeted` and never count in live accuracy; the sample's labels
    are `random` and come with their size and a 95 % interval."""
    from sentiops.feedback.labels import read_labels
    from sentiops.security.secrets import SampleKey

    monkeypatch.setenv("SENTIOPS_EVAL_SAMPLE_RATE", "0.5")
    store = str(tmp_path / "store")
    index = _index(store, 30)
    fb = Feedback(store, index=index)
    key = SampleKey.from_env(rate=0.5)
    sampled = [f"r{i}" for i in range(30) if key.in_sample(f"r{i}")]
    assert 5 < len(sampled) < 25  # a keyed hash of the id: about half
    # targeted labels all wrong (the model said positive), the sample's all right
    fb.record([Item(f"r{i}", "positive" if f"r{i}" in sampled else "negative") for i in range(30)])
    stored = read_labels(store)
    assert dict(zip(stored.id, stored["sample"], strict=True)) == {
        f"r{i}": "random" if f"r{i}" in sampled else "targeted" for i in range(30)
    }
    live = fb.live_metrics()["1"]
    assert live["labels"] == len(sampled) and live["accuracy"] == 1.0
    assert 0.6 < live["accuracy_low"] < 1.0 and live["accuracy_high"] == pytest.approx(1.0)


def test_wilson_interval() -> None:
    from sentiops.scoring import wilson_interval

    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_the_memory_of_recent_predictions_is_bounded_in_rows_and_bytes(tmp_path: Path) -> None:
    from sentiops import metrics

    index = PredictionIndex(str(tmp_path), capacity=100, max_bytes=40_000)
    index.remember({"id": f"r{i}", "text": "x" * 10} for i in range(150))  # the row bound
    assert len(index.rows) == 100 and "r149" in index.rows and "r49" not in index.rows
    index.remember({"id": f"long{i}", "text": "y" * 1000} for i in range(40))  # ~1.2 kB each
    assert index.bytes <= 40_000 and "long39" in index.rows  # the byte bound: oldest out
    assert not any(k.startswith("r") for k in index.rows) and "long0" not in index.rows
    assert metrics.PREDICTION_MEMORY_ROWS._value.get() == len(index.rows)
    assert metrics.PREDICTION_MEMORY_BYTES._value.get() == index.bytes


def test_the_metric_samples_are_the_label_samples() -> None:
    from sentiops import metrics
    from sentiops.feedback.labels import RANDOM, TARGETED

    assert metrics.SAMPLES == (RANDOM, TARGETED)
