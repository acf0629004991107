"""Estimated performance through the real sidecar: a model packaged by training (calibrated on
its validation split, its drift detector fitted after), traffic from the same distribution
posted as the predictor's CloudEvents with the served probabilities. The window's estimated
accuracy holds the realized one (the traffic's labels) in its interval; the gauges, /status
and, once labels of the random sample are in the store, the estimate's own error say so."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from sentiops.models import load_model
from tests.conftest import NEG, NEU, POS, THINGS
from tests.drift.conftest import predictions

pytestmark = pytest.mark.integration
LABELS = ["negative", "neutral", "positive"]
WINDOW = 200


def noisy(n: int, seed: int) -> pd.DataFrame:
    """Texts as sure as their words: a clear text (three cue words of one class) has that
    label 95 % of the time, a mixed one (two of one class, one of another) 60 %, else the other
    class's. A model learns how sure each kind is; its calibrated probabilities then say what
    the labels will do (accuracy about 0.78)."""
    rng = np.random.default_rng(seed)
    words = {"positive": POS, "negative": NEG, "neutral": NEU}
    rows = []
    for i in range(n):
        main, other = rng.choice(LABELS, 2, replace=False)
        clear = rng.random() < 0.5
        cues = [*rng.choice(words[main], 3 if clear else 2, replace=False)]
        cues += [] if clear else [rng.choice(words[other])]
        rng.shuffle(cues)
        label = main if rng.random() < (0.95 if clear else 0.6) else other
        rows.append((f"the {rng.choice(THINGS)} was {' and '.join(cues)} #{seed}-{i}", label))
    return pd.DataFrame(rows, columns=["text", "label"])


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sentiops.params import TrainConfig
    from sentiops.training.train import train_on_splits

    df = noisy(900, seed=21)
    out = tmp_path_factory.mktemp("estimate-model") / "model"
    cfg = TrainConfig(data=["synthetic"], output=out, track=False, char_ngrams=False, c=1.0)
    train_on_splits(
        cfg, df.iloc[:600], df.iloc[600:], None, {"source": ["synthetic"]}, progress=False
    )
    return out


def _label_part(store: Path, texts: list[str], gold: list[str], probs: list[dict]) -> None:
    """The feedback API's label part for these predictions (all in the random sample)."""
    rows = [
        {
            "id": f"x{i}",
            "text": t,
            "label": g,
            "predicted_label": max(p, key=p.__getitem__),
            "confidence": max(p.values()),
            "model_name": "sentiment",
            "model_version": "7",
            "sample": "random",
        }
        for i, (t, g, p) in enumerate(zip(texts, gold, probs, strict=True))
    ]
    folder = store / "labels" / "feedback" / f"date={datetime.now(UTC):%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / "part-000000-test.parquet")


def test_window_estimate_holds_the_realized_accuracy(
    sidecar_factory, packaged: Path, tmp_path: Path
) -> None:
    loaded = load_model(packaged)
    assert loaded.calibrator is not None  # the probabilities below are the served ones
    reference = loaded.manifest["calibration"]["reference"]["accuracy"]
    traffic = noisy(2 * WINDOW, seed=22)
    texts, gold = traffic.text.tolist(), traffic.label.tolist()
    probs = predictions(packaged, texts)
    store = tmp_path / "store"
    s = sidecar_factory(
        packaged,
        "--window-size",
        str(WINDOW),
        "--min-window",
        "20",
        "--estimate-labels-seconds",
        "0.5",
        store=store,
    )
    s.post_texts(packaged, texts[:WINDOW], per_request=4)
    s.wait_for(lambda: s.windows("7", "no_drift") + s.windows("7", "drift") >= 1, what="window")

    first = httpx.get(s.url + "/status").json()["versions"]["7"]["last"]["estimate"]
    pred = [max(p, key=p.__getitem__) for p in probs[:WINDOW]]
    realized = float(np.mean([p == g for p, g in zip(pred, gold[:WINDOW], strict=True)]))
    acc = first["accuracy"]
    assert first["n"] == WINDOW
    assert acc["low"] <= realized <= acc["high"], (acc, realized)
    assert acc["value"] == pytest.approx(
        np.mean([max(p.values()) for p in probs[:WINDOW]]), abs=1e-4
    )
    assert first["validation_accuracy"] == pytest.approx(reference, abs=1e-4)
    # the gauges say the same
    assert s.sample("sentiops_estimated_accuracy", model_version="7") == pytest.approx(
        acc["value"], abs=1e-4
    )
    assert s.sample("sentiops_estimated_accuracy_low", model_version="7") == pytest.approx(
        acc["low"], abs=1e-4
    )
    assert s.sample("sentiops_validation_accuracy", model_version="7") == pytest.approx(
        reference, abs=1e-4
    )
    f1 = first["macro_f1"]
    assert 0 < f1["low"] <= f1["value"] <= f1["high"] <= 1
    for label in LABELS:
        assert s.sample("sentiops_estimated_recall", model_version="7", label=label) > 0

    # labels of the random sample arrive for the first window: at the next window the
    # estimate's own error is measured on them (estimated minus realized)
    _label_part(store, texts[:WINDOW], gold[:WINDOW], probs[:WINDOW])
    s.post_texts(packaged, texts[WINDOW:], per_request=4)
    s.wait_for(
        lambda: s.sample("sentiops_estimate_error_labels", model_version="7") == WINDOW,
        what="the estimate's error on the labels",
    )
    error = s.sample("sentiops_estimate_error", model_version="7")
    assert error == pytest.approx(acc["value"] - realized, abs=1e-3)
    status = httpx.get(s.url + "/status").json()["versions"]["7"]
    assert abs(status["estimate_error"]["error"]) <= status["estimate_error"]["expected_within"]
    assert [w["estimate"]["n"] for w in status["recent"]] == [WINDOW, WINDOW]
