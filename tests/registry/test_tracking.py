"""MLflow tracking: local sqlite by default, a real server via MLFLOW_TRACKING_URI."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from sentiops.config import get_settings
from sentiops.errors import TrackingError
from sentiops.registry import tracking
from sentiops.training.train import TrainConfig, train
from tests.conftest import make_frame, run_cli
from tests.servers import free_port, mlflow_server


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    csv = tmp_path / "d.csv"
    make_frame(20).to_csv(csv, index=False)
    return TrainConfig(data=[str(csv)], output=tmp_path / "model", **kw)


def test_training_run_is_logged_and_registered(tmp_path: Path, sentiops_home: Path) -> None:
    result = train(_cfg(tmp_path, tags={"purpose": "test"}), progress=False)
    assert result.tracking["registered_version"] == "1"
    assert get_settings().tracking_uri.endswith(str(sentiops_home / "mlflow.db"))
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(tracking.REGISTERED_MODEL, "challenger")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset_version"] == result.dataset.version
    assert run.data.tags["purpose"] == "test"
    assert run.data.metrics["test_macro_f1"] == pytest.approx(result.metrics["test"]["macro_f1"])
    # the registered pyfunc loads and predicts through our own model directory
    model = mlflow.pyfunc.load_model(f"models:/{tracking.REGISTERED_MODEL}@challenger")
    out = model.predict(["the app was love and great"])
    assert list(out["label"]) == ["positive"]
    # a second run adds version 2 and moves the alias
    train(_cfg(tmp_path, seed=1), progress=False)
    assert tracking.get_alias_version(tracking.REGISTERED_MODEL, "challenger") == "2"


def test_unreachable_mlflow_fails_before_training(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    make_frame(20).to_csv(csv, index=False)
    proc = run_cli(
        "train",
        "--data",
        csv,
        "--model-type",
        "tfidf-logreg",
        "--output",
        tmp_path / "m",
        env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"},
    )
    assert proc.returncode == 7, proc.stderr
    assert "unreachable" in proc.stderr and "--no-track" in proc.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.integration
def test_remote_mlflow_server(tmp_path: Path, monkeypatch) -> None:
    with mlflow_server(tmp_path / "mlflow") as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        result = train(_cfg(tmp_path), progress=False)
        assert result.tracking["registered_version"] == "1"
        mlflow.set_tracking_uri(url)
        client = mlflow.MlflowClient()
        mv = client.get_model_version_by_alias(tracking.REGISTERED_MODEL, "challenger")
        assert client.get_run(mv.run_id).data.params["c"] == "4.0"


def test_failed_training_registers_nothing(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    df = make_frame(20)
    df.loc[3, "label"] = "meh"
    df.to_csv(csv, index=False)
    proc = run_cli(
        "train", "--data", csv, "--model-type", "tfidf-logreg", "--output", tmp_path / "m"
    )
    assert proc.returncode == 3
    tracking.configure()
    client = mlflow.MlflowClient()
    assert client.search_registered_models() == []
    assert not (tmp_path / "m").exists()


def test_alias_lookup_distinguishes_missing_from_outage(tmp_path: Path, monkeypatch) -> None:
    tracking.configure()
    assert tracking.get_alias_version("no-such-model", "champion") is None
    train(_cfg(tmp_path), progress=False)
    assert tracking.get_alias_version(tracking.REGISTERED_MODEL, "champion") is None
    assert tracking.get_alias_version(tracking.REGISTERED_MODEL, "challenger") == "1"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TrackingError, match="could not resolve"):
        tracking.get_alias_version(tracking.REGISTERED_MODEL, "champion")
