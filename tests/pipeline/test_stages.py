"""The pipeline's stages as the plain functions they are (files in, files out), without KFP."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sentiops.config import SEED, Settings
from sentiops.errors import ConfigError, GateRejected, ValidationFailed
from sentiops.models import load_model
from sentiops.params import GateConfig
from sentiops.pipeline import stages
from sentiops.registry import lifecycle as registry
from tests.conftest import make_frame


@pytest.fixture
def splits(tmp_path: Path) -> dict[str, Path]:
    csv = tmp_path / "d.csv"
    make_frame(30).to_csv(csv, index=False)
    stages.ingest([str(csv)], tmp_path / "raw.parquet")
    _, version = stages.validate(tmp_path / "raw.parquet", tmp_path / "clean.parquet", tmp_path)
    outs = {k: tmp_path / f"{k}.parquet" for k in ("train", "validation", "test")}
    info = stages.split(tmp_path / "clean.parquet", outs, seed=SEED)
    assert info == {"rows": {"train": 63, "validation": 9, "test": 18}, "overlap": 0}
    return outs | {"version": Path(version)}


def test_validate_writes_the_report_before_failing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"text": ["ok", " "], "label": ["positive", "negative"]}).to_parquet(bad)
    with pytest.raises(ValidationFailed, match="empty_text"):
        stages.validate(bad, tmp_path / "clean.parquet", tmp_path / "report", min_per_class=1)
    assert "FAILED" in (tmp_path / "report" / "validation.md").read_text()
    assert not (tmp_path / "clean.parquet").exists()


def test_train_config_names_what_is_allowed(tmp_path: Path) -> None:
    cfg = stages.train_config(
        "tfidf-logreg", "offline", {"c": 2, "class_weights": False}, 1, tmp_path
    )
    assert cfg.model_params()["c"] == 2 and cfg.model_params()["class_weights"] is False
    with pytest.raises(ConfigError, match=r"(?s)\['lr'\].*tfidf-logreg takes: .*c, char_ngrams"):
        stages.train_config("tfidf-logreg", "offline", {"lr": 0.1}, 1, tmp_path)
    with pytest.raises(ConfigError, match=r"\['seed'\]"):  # the pipeline owns the seed
        stages.train_config("transformer", "offline", {"seed": 3}, 1, tmp_path)
    with pytest.raises(ConfigError, match="epochs"):  # out of range: a clear error too
        stages.train_config("transformer", "offline", {"epochs": 0}, 1, tmp_path)
    # the serving form is chosen per run (the distilled student: `hyperparameters` of the
    # pipeline), and checked like every other field
    cfg = stages.train_config(
        "transformer", "offline", {"serving_form": "student-int8"}, 1, tmp_path
    )
    assert cfg.serving_form == "student-int8"
    with pytest.raises(ConfigError, match="unknown serving form"):
        stages.train_config("transformer", "offline", {"serving_form": "fp16"}, 1, tmp_path)


def test_train_evaluate_gate_register(splits: dict[str, Path], tmp_path: Path) -> None:
    settings = stages.endpoints()
    assert isinstance(settings, Settings)
    cfg = stages.train_config("tfidf-logreg", "offline", {}, SEED, tmp_path / "m")
    info = stages.train(
        splits["train"], splits["validation"], tmp_path / "m", cfg, "ds1", track=True
    )
    assert info["registered_version"] == "1" and info["val_macro_f1"] > 0.8
    result = stages.evaluate(tmp_path / "m", splits["test"])
    assert result["n"] == 18 and len(result["predictions"]) == 18
    decision = stages.gate(
        tmp_path / "m",
        splits["test"],
        GateConfig(n_resamples=1000),
        "none",
        tmp_path / "w",
        "ds1",
        challenger_registry_version="1",
    )
    assert decision.approved and registry.tags_of("1")["gate.approved"] == "true"
    assert decision.dataset["test_sources"] == {str(tmp_path / "d.csv"): 18}  # which data
    with pytest.raises(GateRejected):
        stages.register(tmp_path / "m", {"approved": False}, str(tmp_path / "store"), "sentiment")
    pushed = stages.register(
        tmp_path / "m",
        decision.to_dict(),
        str(tmp_path / "store"),
        "sentiment",
        registry_version="1",
    )
    assert load_model(pushed["uri"]).version == info["version"]
    assert registry.version_of(registry.CANDIDATE) == "1"


def test_train_ships_the_drift_detector_with_the_model(tmp_path: Path) -> None:
    """The drift step is part of packaging: the detector is in the model directory, under its
    checksums, before the model is evaluated, registered or gated."""
    import json

    csv = tmp_path / "d.csv"
    make_frame(80).to_csv(csv, index=False)
    stages.ingest([str(csv)], tmp_path / "raw.parquet")
    stages.validate(tmp_path / "raw.parquet", tmp_path / "clean.parquet", tmp_path)
    outs = {k: tmp_path / f"{k}.parquet" for k in ("train", "validation", "test")}
    stages.split(tmp_path / "clean.parquet", outs, seed=SEED)
    cfg = stages.train_config("tfidf-logreg", "offline", {}, SEED, tmp_path / "m")
    info = stages.train(outs["train"], outs["validation"], tmp_path / "m", cfg, "ds1", track=False)
    manifest = json.loads((tmp_path / "m" / "model.json").read_text())
    assert manifest["version"] == info["version"]
    assert {"drift/detector.json", "drift/reference.npy"} <= set(manifest["files"])
    assert manifest["drift"]["reference_size"] == 168 and manifest["drift"]["holdout_size"] == 24
    assert load_model(tmp_path / "m").version == info["version"]  # checksums hold


def test_a_child_of_the_local_stack_gets_the_absolute_home(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """Servers run in their own folders: with the default relative SENTIOPS_HOME a child (the
    drift sidecar, and the retraining run it starts) would name another home there."""
    import sys

    from sentiops.local.processes import start_process

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENTIOPS_HOME", ".sentiops")
    child = start_process(
        "env",
        [sys.executable, "-c", "import os; print(os.environ['SENTIOPS_HOME'])"],
        tmp_path / "child",
    )
    child.proc.wait(30)
    assert child.log.read_text().strip() == str(tmp_path / ".sentiops")
