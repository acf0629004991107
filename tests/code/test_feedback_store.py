"""The feedback store's live accuracy: every label counted once, each label part read once
(a predictor re-exports live accuracy after every label and every 30 s)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sentiops.errors import FeedbackError
from sentiops.feedback import Feedback, Item, PredictionIndex


def _index(store: str, n: int) -> PredictionIndex:
    index = PredictionIndex(store)
    index.remember({"id": f"r{i}", "text": f"text {i}", "label": "positive", "confidence": 0.9,
                    "model_name": "sentiment", "model_version": "1" if i < 30 else "2",
                    "time": "2026-12-02T00:00:00+00:00"} for i in range(n))  # fmt: skip
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
    assert live["2"] == {"labels": 2.0, "accuracy": 0.5, "macro_f1": pytest.approx(1 / 3)}
    assert len(reads) == 1  # only the other replica's part; its own 20 were never re-read
    here.record([Item("r21", "positive")])
    assert here.live_metrics()["1"]["labels"] == 21 and len(reads) == 1
    with pytest.raises(FeedbackError) as exc:  # the other replica's label is known here too
        here.record([Item("r30", "neutral")])
    assert exc.value.status == 409
    fresh = Feedback(store, index=index)  # a restarted replica reads everything once
    assert fresh.live_metrics() == here.live_metrics()
