"""Units of the detector and the sidecar that need no server and no Alibi."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from drift.events import BadEvent, InferenceEvent, Joiner, request_texts, response_predictions
from drift.settings import DEFAULT_PORT, from_args, from_env
from sentiops.detection import detector, windows
from sentiops.errors import DriftError
from sentiops.metrics import EXPORTED_METRICS
from sentiops.models import load_model

REPO = Path(__file__).resolve().parents[2]


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[=<>!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_drift_requirements_cover_the_core_and_models_extra() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = _names(project["dependencies"] + project["optional-dependencies"]["models"])
    lines = (REPO / "drift" / "requirements.txt").read_text().splitlines()
    have = _names([x for x in lines if x.strip() and not x.startswith("#")])
    assert needed <= have, needed - have
    assert {"alibi-detect", "pydantic", "torch"} <= have


def test_holm_and_bonferroni() -> None:
    assert windows.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert windows.holm([0.5, 0.9]) == [1.0, 1.0]


def test_prediction_level_tests() -> None:
    ref = np.array([100, 50, 150])
    assert windows.label_mix_test(ref, np.array([33, 17, 50]))[1] > 0.5
    assert windows.label_mix_test(ref, np.array([90, 5, 5]))[1] < 1e-6
    assert windows.label_mix_test(ref, np.array([0, 0, 0]))[1] == 1.0
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.4, 1.0, 500)
    assert windows.confidence_test(conf, rng.uniform(0.4, 1.0, 100))[1] > 0.01
    assert windows.confidence_test(conf, rng.uniform(0.34, 0.5, 100))[1] < 1e-6


def test_fit_rejects_bad_input() -> None:
    class Model:
        labels = ["negative", "positive"]

        def predict_proba(self, texts):
            return np.full((len(texts), 2), 0.5)

    with pytest.raises(DriftError, match="reference texts"):
        detector.fit(Model(), ["a", " ", "b"])
    with pytest.raises(DriftError, match="alpha"):
        detector.fit(Model(), ["a"] * 50, alpha=1.5)


def test_load_rejects_missing_and_tampered_detectors(tmp_path: Path, detector_model: Path) -> None:
    import shutil

    from sentiops.models import modeldir

    with pytest.raises(DriftError, match="no drift detector"):
        detector.load(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(detector_model, copy)
    det = detector.load(copy)
    assert det.version == modeldir.read_manifest(copy)["version"] and det.labels
    assert det.reference.shape[1] == 384 and det.config["permutations"] == 100
    ref = copy / "drift" / "reference.npy"
    ref.write_bytes(ref.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(DriftError, match="corrupt drift detector"):
        detector.load(copy)


def test_cli_fit_writes_the_detector_into_the_model_dir(
    runner, detector_model: Path, tmp_path: Path, corpus
) -> None:
    from tests.conftest import invoke

    data, hold = tmp_path / "train.csv", tmp_path / "hold.csv"
    data.write_text("text\n" + "\n".join(json.dumps(t) for t in corpus.train))
    hold.write_text("text\n" + "\n".join(json.dumps(t) for t in corpus.holdout))
    out = tmp_path / "with-detector"
    result = invoke(
        runner,
        "drift",
        "fit",
        "--model",
        detector_model,
        "--data",
        data,
        "--holdout",
        hold,
        "--output",
        out,
        "--reference-size",
        "50",
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "model.json").read_text())
    assert {"drift/detector.json", "drift/reference.npy"} <= set(manifest["files"])
    assert manifest["drift"]["reference_size"] == 50
    bad = invoke(
        runner, "drift", "fit", "--model", tmp_path / "nope", "--data", data, "--output", out
    )
    assert bad.exit_code == 4  # ModelError: no such model directory
    missing = invoke(runner, "drift", "check", "--detector", tmp_path, "--data", data)
    assert missing.exit_code == 12  # DriftError (run in the drift environment)


def test_events_parsing() -> None:
    assert request_texts({"instances": ["a", {"text": "b"}]}) == ["a", "b"]
    v2 = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 1], "data": [["a"], ["b"]]}]
    }
    assert request_texts(v2) == ["a", "b"]
    with pytest.raises(BadEvent) as e:
        request_texts({"inputs": [{"name": "x", "datatype": "BYTES", "data": ["a"]}]})
    assert e.value.reason == "no_text"
    labels, probs, version = response_predictions(
        {
            "model_version": "9",
            "outputs": [
                {"name": "label", "data": ["positive", "negative"]},
                {"name": "probabilities", "shape": [2, 2], "data": [0.1, 0.9, 0.8, 0.2]},
            ],
        }
    )
    assert labels == ["positive", "negative"] and probs == [[0.1, 0.9], [0.8, 0.2]]
    assert version == "9"
    with pytest.raises(BadEvent) as e:
        response_predictions(
            {
                "outputs": [
                    {"name": "label", "data": ["a"]},
                    {"name": "probabilities", "shape": [1, 3], "data": [0.5, 0.5]},
                ]
            }
        )
    assert e.value.reason == "mismatch"


def test_joiner_pairs_by_id_in_any_order_and_expires() -> None:
    now = datetime.now(UTC)
    j = Joiner(timeout=10)
    resp = InferenceEvent(
        "response", "x", now, "3", None, labels=["positive"], probabilities=[{"positive": 1.0}]
    )
    assert j.add(resp) == []
    (pred,) = j.add(InferenceEvent("request", "x", now, None, None, texts=["hi"]))
    assert (pred.id, pred.text, pred.label, pred.model_version) == ("x", "hi", "positive", "3")
    j.add(InferenceEvent("request", "lonely", now, None, None, texts=["a"], received=0.0))
    assert j.expire(now=100.0) == 1 and not j.pending


def test_settings_from_env_and_flags() -> None:
    s = from_env(
        {
            "SENTIOPS_DRIFT_WINDOW_SIZE": "50",
            "SENTIOPS_RETRAIN_ENABLED": "true",
            "SENTIOPS_RETRAIN_DATASETS": "a, b",
            "SENTIOPS_STORE": "/x",
        }
    )
    assert (s.window_size, s.retrain_enabled, s.retrain_datasets) == (50, True, ["a", "b"])
    assert s.port == DEFAULT_PORT == 9081  # not KServe's 8080 (HTTP) / 8081 (gRPC)
    assert (
        from_args(["--window-size", "40", "--min-window", "20", "--store", "/y"]).window_size == 40
    )
    with pytest.raises(ValueError, match="min window"):
        from_env({"SENTIOPS_DRIFT_MIN_WINDOW": "500", "SENTIOPS_STORE": "/x"})


def test_drift_metrics_are_exported_names() -> None:
    for name in (
        "sentiops_drift_p_value",
        "sentiops_drift_windows_total",
        "sentiops_drift_events_total",
        "sentiops_prediction_log_rows_total",
        "sentiops_labelling_queued_total",
        "sentiops_retrain_triggers_total",
    ):
        assert name in EXPORTED_METRICS


def test_cli_fit_without_holdout_holds_out_what_training_held_out(runner, tmp_path: Path) -> None:
    """`drift fit --model M --data TRAIN.csv` (no --holdout) on the data M was trained on: the
    label-mix / confidence references come from the validation + test split that training made,
    so windows of unseen same-distribution tweets stay within the false-alarm rate (with the
    training texts as the reference, every window of 200 was flagged: rate 1.0)."""
    from sentiops.data.datasets import fetch_builtin
    from sentiops.params import TrainConfig
    from sentiops.training.train import train
    from tests.conftest import invoke

    tweets = fetch_builtin("vader-tweets").sample(frac=1.0, random_state=1)
    half = len(tweets) // 2
    seen, unseen = tweets.iloc[:half], tweets.iloc[half:]
    data = tmp_path / "train.csv"
    seen[["text", "label"]].to_csv(data, index=False)
    model = tmp_path / "m"
    train(
        TrainConfig(data=[str(data)], output=model, track=False, drift_detector=False),
        progress=False,
    )
    result = invoke(
        runner, "drift", "fit", "--model", model, "--data", data, "--reference-size", "50"
    )
    assert result.exit_code == 0, result.output
    det = detector.load(model)
    assert det.config["holdout"] == "validation + test split of --data"
    assert det.config["holdout_size"] == 630  # 30 % of 2,100 rows the model never trained on
    loaded = load_model(model)
    rng = np.random.default_rng(0)
    alarms = 0
    for _ in range(40):
        window = unseen.text.iloc[rng.choice(len(unseen), 200, replace=False)].tolist()
        proba = loaded.predict_proba(window)
        counts = np.bincount(proba.argmax(1), minlength=len(det.labels))
        p_mix = windows.label_mix_test(det.reference_label_counts, counts)[1]
        p_conf = windows.confidence_test(det.reference_confidence, proba.max(1))[1]
        alarms += min(1.0, 3 * min(p_mix, p_conf)) < det.alpha
    assert alarms / 40 <= 0.15, f"{alarms} of 40 in-domain windows flagged"
    # other data than the model's, and no --holdout: refused, naming the fix
    other = tmp_path / "other.csv"
    unseen[["text", "label"]].to_csv(other, index=False)
    refused = invoke(runner, "drift", "fit", "--model", model, "--data", other)
    assert refused.exit_code == 12 and "--holdout" in refused.output
    assert "not the data this model was trained on" in refused.output
