"""Calibration and label-free performance estimation (`sentiops.estimation`): calibration
lowers the ECE of an over-confident model on held-out data (in numbers and through the real
packaging path: training stores the calibrator, `load_model` serves calibrated probabilities);
the expected confusion matrix and its intervals against labels drawn from the probabilities;
tallies add up; the histogram estimate; the two-version comparison the canary judge can call;
the estimate's own error on labelled rows; the stored calibrator refuses what is not its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sentiops.errors import ModelError
from sentiops.estimation import calibration, performance
from sentiops.estimation.performance import FAIL, INCONCLUSIVE, PASS, Interval
from sentiops.models import load_model, modeldir
from tests.conftest import make_frame

LABELS = ["negative", "neutral", "positive"]


def truth_and_overconfident(
    n: int, seed: int, sharpen: float = 3.0
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Rows whose true label distribution is known (softmax of z), labels drawn from it, and a
    deliberately over-confident model's probabilities (softmax of `sharpen` * z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)) * 1.2
    true_p = calibration.softmax(z)
    y = (rng.random(n)[:, None] > true_p.cumsum(axis=1)).sum(axis=1)
    return true_p, [LABELS[i] for i in y], calibration.softmax(sharpen * z)


def draws(p: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` label vectors drawn from the rows' probabilities (indices)."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, len(p)))[:, :, None] > p.cumsum(axis=1)[None]).sum(axis=2)


# ------------------------------------------------------------------------------ calibration
def test_temperature_scaling_lowers_held_out_ece_of_an_overconfident_model() -> None:
    _, val_gold, val_p = truth_and_overconfident(600, seed=1)
    _, test_gold, test_p = truth_and_overconfident(3000, seed=2)
    cal = calibration.fit(val_p, val_gold, LABELS)
    assert cal.temperature == pytest.approx(3.0, rel=0.2)  # undoes the sharpening
    before = calibration.quality(test_p, test_gold, LABELS)
    after = calibration.quality(cal.apply(test_p), test_gold, LABELS)
    assert before["ece"] > 0.1 and after["ece"] < before["ece"] / 3
    assert after["brier"] < before["brier"] and after["log_loss"] < before["log_loss"]
    assert after["accuracy"] == before["accuracy"]  # temperature never changes a label
    assert abs(after["mean_confidence"] - after["accuracy"]) < 0.03


def test_fit_and_measure_reports_held_out_halves_and_skips_tiny_splits() -> None:
    _, gold, p = truth_and_overconfident(400, seed=3)
    cal, record = calibration.fit_and_measure(p, gold, LABELS, seed=0)
    assert cal is not None and record["method"] == "temperature" and record["rows"] == 400
    assert record["after"]["ece"] < record["before"]["ece"]
    assert record["after"]["log_loss"] < record["before"]["log_loss"]
    vector, rec = calibration.fit_and_measure(p, gold, LABELS, "vector", seed=0)
    assert vector is not None and len(rec["scale"]) == 3 and rec["after"]["ece"] < 0.1
    none, skipped = calibration.fit_and_measure(p[:10], gold[:10], LABELS)
    assert none is None and "at least" in skipped["skipped"]


def test_calibrator_round_trip_and_what_it_refuses(tmp_path: Path) -> None:
    cal = calibration.Calibrator(tuple(LABELS), "temperature", 1.7)
    p = calibration.softmax(np.random.default_rng(0).normal(size=(5, 3))).astype(np.float32)
    out = cal.apply(p)
    assert out.dtype == np.float32 and np.allclose(out.sum(axis=1), 1, atol=1e-6)
    assert (out.argmax(axis=1) == p.argmax(axis=1)).all()
    assert (out.max(axis=1) < p.max(axis=1)).all()
    assert calibration.Calibrator.from_dict(cal.to_dict()) == calibration.Calibrator(
        tuple(LABELS), "temperature", 1.7
    )
    for bad, says in (
        ({"method": "isotonic", "labels": LABELS}, "unknown calibration method"),
        ({"method": "temperature", "labels": LABELS, "temperature": -1}, "positive"),
        ({"method": "vector", "labels": LABELS, "scale": [1]}, "one finite"),
        ([1, 2], "no JSON object"),
    ):
        with pytest.raises(ModelError, match=says):
            calibration.Calibrator.from_dict(bad)
    with pytest.raises(ValueError, match="shape"):
        cal.apply(np.ones((2, 2)) / 2)
    calibration.save(tmp_path, cal)
    manifest = {"labels": ["a", "b", "c"], "files": {calibration.FILE: "x"}}
    with pytest.raises(ModelError, match="for labels"):
        calibration.read(tmp_path, manifest)
    assert calibration.read(tmp_path, {"labels": LABELS, "files": {}}) is None


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deliberately over-confident TF-IDF model (hardly regularised, 30 % of its training
    labels flipped), packaged by the real training path: the calibrator is fitted on the
    validation split and stored in the model directory."""
    from sentiops.params import TrainConfig
    from sentiops.training.train import train_on_splits

    df = make_frame(150, seed=4)
    rng = np.random.default_rng(4)
    flip = rng.random(len(df)) < 0.3
    df.loc[flip, "label"] = rng.choice(LABELS, int(flip.sum()))
    train, val, test = df.iloc[:250], df.iloc[250:350], df.iloc[350:]
    out = tmp_path_factory.mktemp("calibrated") / "model"
    cfg = TrainConfig(
        data=["synthetic"],
        output=out,
        track=False,
        drift_detector=False,
        c=1000.0,
        char_ngrams=False,
    )
    train_on_splits(cfg, train, val, test, {"source": ["synthetic"]}, progress=False)
    return out


def test_training_stores_the_calibrator_and_load_model_serves_calibrated(packaged: Path) -> None:
    manifest = json.loads((packaged / "model.json").read_text())
    record = manifest["calibration"]
    assert calibration.FILE in manifest["files"] and record["temperature"] > 1.2  # over-confident
    assert record["after"]["ece"] < record["before"]["ece"]
    assert record["reference"]["rows"] == 100
    test = manifest["metrics"]["test"]
    assert test["ece"] < test["ece_uncalibrated"] and test["brier"] < test["brier_uncalibrated"]
    loaded = load_model(packaged)
    texts = ["the phone was great and happy", "the app was awful", "the store was okay"]
    raw, served = loaded.predict_proba(texts, calibrated=False), loaded.predict_proba(texts)
    assert np.allclose(served, loaded.calibrator.apply(raw))
    assert (served.max(axis=1) < raw.max(axis=1)).all()
    assert loaded.predict_labels(texts) == [LABELS[i] for i in raw.argmax(axis=1)]


def test_a_tampered_calibrator_is_refused(packaged: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(packaged, copy)
    data = json.loads((copy / calibration.FILE).read_text())
    (copy / calibration.FILE).write_text(json.dumps(data | {"temperature": 0.1}))
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(copy)


def test_calibration_none_keeps_raw_probabilities(tmp_path: Path) -> None:
    from sentiops.params import TrainConfig
    from sentiops.training.train import train_on_splits

    df = make_frame(40, seed=5)
    cfg = TrainConfig(
        data=["synthetic"],
        output=tmp_path / "m",
        track=False,
        drift_detector=False,
        calibration="none",
        char_ngrams=False,
    )
    train_on_splits(cfg, df.iloc[:80], df.iloc[80:], None, {}, progress=False)
    loaded = load_model(tmp_path / "m")
    assert loaded.calibrator is None and "calibration" not in loaded.manifest
    assert modeldir.read_manifest(tmp_path / "m")["metrics"]["validation"]["ece"] >= 0


# ------------------------------------------------------------------------------ estimation
def test_expected_confusion_and_metrics_by_hand() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.5, 0.1, 0.4]])
    est = performance.estimate(p, LABELS)
    # C[j, k]: sum of p_j over rows predicted k (rows 0 and 3 predict negative)
    assert np.allclose(est.expected_confusion, [[1.2, 0.1, 0.2], [0.3, 0.6, 0.2], [0.5, 0.3, 0.6]])
    assert est.accuracy.value == pytest.approx((0.7 + 0.6 + 0.6 + 0.5) / 4)
    assert est.recall["negative"].value == pytest.approx(1.2 / 1.5)
    assert est.precision["negative"] == pytest.approx(1.2 / 2)
    f1 = [2 * 1.2 / (2 + 1.5), 2 * 0.6 / (1 + 1.1), 2 * 0.6 / (1 + 1.4)]
    assert est.macro_f1.value == pytest.approx(np.mean(f1))
    var = sum(q * (1 - q) for q in (0.7, 0.6, 0.6, 0.5)) / 16
    assert est.accuracy.sd == pytest.approx(np.sqrt(var))


def test_intervals_cover_labels_drawn_from_calibrated_probabilities() -> None:
    """If the probabilities are right, the window's realized metrics fall inside the
    estimate's 95 % intervals about 95 % of the time (labels drawn from the rows)."""
    true_p, _, _ = truth_and_overconfident(300, seed=6)
    est = performance.estimate(true_p, LABELS)
    ys = draws(true_p, 800, seed=7)
    inside = {"accuracy": 0, "macro_f1": 0, "neutral": 0}
    for y in ys:
        real = performance.realized(true_p, [LABELS[i] for i in y], LABELS)
        inside["accuracy"] += est.accuracy.low <= real["accuracy"] <= est.accuracy.high
        inside["macro_f1"] += est.macro_f1.low <= real["macro_f1"] <= est.macro_f1.high
        r = est.recall["neutral"]
        inside["neutral"] += r.low <= real["recall"]["neutral"] <= r.high
    for name, k in inside.items():
        assert 0.92 <= k / len(ys) <= 0.98, (name, k / len(ys))


def test_tallies_add_up_like_one_window() -> None:
    true_p, _, _ = truth_and_overconfident(250, seed=8)
    a, b = performance.Tally.of(true_p[:100], LABELS), performance.Tally.of(true_p[100:], LABELS)
    whole = performance.from_tally(a + b)
    assert whole.to_dict() == performance.estimate(true_p, LABELS).to_dict()
    again = performance.Tally.from_dict(json.loads(json.dumps((a + b).to_dict())))
    assert performance.from_tally(again).to_dict() == whole.to_dict()
    with pytest.raises(ValueError, match="cannot add"):
        _ = a + performance.Tally(("x", "y", "z"))
    empty = performance.estimate(np.zeros((0, 3)), LABELS)
    assert empty.n == 0 and (empty.accuracy.low, empty.accuracy.high) == (0.0, 1.0)


def test_the_histogram_estimate_matches_the_rows() -> None:
    from sentiops.metrics import CONFIDENCE_BUCKETS

    true_p, _, _ = truth_and_overconfident(2000, seed=9)
    conf = true_p.max(axis=1)
    cumulative = {b: float((conf <= b).sum()) for b in CONFIDENCE_BUCKETS}
    cumulative[float("inf")] = float(len(conf))
    est = performance.from_histogram(cumulative, float(conf.sum()), float(len(conf)))
    rows = performance.estimate(true_p, LABELS).accuracy
    assert est is not None and est.value == pytest.approx(rows.value)
    assert est.sd == pytest.approx(rows.sd, rel=0.1)
    assert performance.from_histogram({}, 0.0, 0.0) is None


# ------------------------------------------------------------------------------ canary vs stable
def _acc(value: float, n: int) -> Interval:
    return Interval.of(value, value * (1 - value) / n)


@pytest.mark.parametrize(
    ("canary", "stable", "labels", "result"),
    [
        ((0.80, 2000), (0.81, 2000), None, PASS),  # within the margin
        ((0.60, 2000), (0.80, 2000), None, FAIL),  # clearly worse, beyond the noise
        ((0.72, 60), (0.80, 60), None, INCONCLUSIVE),  # worse by the point, not the bound: hold
        ((0.60, 20), (0.80, 2000), None, INCONCLUSIVE),  # too little traffic
        ((0.60, 2000), (0.80, 2000), ((70, 100), (72, 100)), PASS),  # labels say otherwise
        ((0.60, 2000), (0.80, 2000), ((50, 100), (80, 100)), FAIL),  # labels agree
        ((0.60, 2000), (0.80, 2000), ((20, 25), (10, 25)), FAIL),  # too few labels to overrule
    ],
)
def test_compare_fails_only_beyond_its_uncertainty_and_never_against_labels(
    canary, stable, labels, result
) -> None:
    c = performance.compare(
        _acc(*canary),
        _acc(*stable),
        canary_n=canary[1],
        stable_n=stable[1],
        margin=0.05,
        alpha=0.05,
        labels=labels,
    )
    assert c.result == result, c.message
    if result == FAIL:
        assert c.drop_low is not None and c.drop_low > 0.05 and c.p_value < 0.05
        assert "lower bound" in c.message
    if labels and result == PASS:
        assert "labels say otherwise" in c.message


def test_compare_histograms_is_what_the_judge_calls() -> None:
    from sentiops.metrics import CONFIDENCE_BUCKETS

    def histogram(conf: np.ndarray) -> tuple[dict[float, float], float, float]:
        cumulative = {b: float((conf <= b).sum()) for b in CONFIDENCE_BUCKETS}
        return cumulative | {float("inf"): float(len(conf))}, float(conf.sum()), float(len(conf))

    rng = np.random.default_rng(12)
    sure, unsure = rng.uniform(0.75, 1.0, 3000), rng.uniform(0.4, 0.8, 3000)
    worse = performance.compare_histograms(histogram(unsure), histogram(sure), margin=0.05)
    assert worse.result == FAIL and worse.drop == pytest.approx(0.275, abs=0.02)
    same = performance.compare_histograms(histogram(sure[:1500]), histogram(sure[1500:]))
    assert same.result == PASS
    few = performance.compare_histograms(histogram(unsure[:20]), histogram(sure), min_n=50)
    assert few.result == INCONCLUSIVE and "too little traffic" in few.message


def test_the_estimates_own_error_on_labelled_rows() -> None:
    true_p, gold, over = truth_and_overconfident(1500, seed=10)
    idx = calibration.gold_index(gold, LABELS)
    right = over.argmax(axis=1) == idx
    calibrated = performance.labelled_error(true_p.max(axis=1), true_p.argmax(axis=1) == idx)
    raw = performance.labelled_error(over.max(axis=1), right)
    assert calibrated is not None and raw is not None
    assert abs(calibrated["error"]) <= calibrated["expected_within"]
    assert raw["error"] > 3 * raw["expected_within"]  # the over-confident model over-estimates
    assert raw["labels"] == 1500 and performance.labelled_error([], []) is None


def test_realized_uses_the_models_labels_and_scoring() -> None:
    p = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    real = performance.realized(p, ["negative", "positive", "positive"], LABELS)
    assert real["accuracy"] == pytest.approx(2 / 3) and real["recall"]["positive"] == 0.5
