"""Each KFP component, called as the plain function it is (typed artifacts at local paths),
and a chain of them under kfp.local's SubprocessRunner, as the pipeline runs them."""

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from kfp import dsl, local

from sentiops.config import MODEL_NAME, REGISTERED_MODEL, SEED
from sentiops.errors import ConfigError, ValidationFailed
from sentiops.gate.promotion import promote_local
from sentiops.models import load_model
from sentiops.params import DataConfig
from sentiops.pipeline.kubeflow import components
from sentiops.pipeline.kubeflow.components.evaluate import evaluate
from sentiops.pipeline.kubeflow.components.gate import gate
from sentiops.pipeline.kubeflow.components.ingest import ingest
from sentiops.pipeline.kubeflow.components.register import register
from sentiops.pipeline.kubeflow.components.split import split
from sentiops.pipeline.kubeflow.components.train import train
from sentiops.pipeline.kubeflow.components.validate import validate
from sentiops.registry import lifecycle as registry
from tests.conftest import make_frame

DATA = DataConfig(data=["unused"])
COLUMNS = {"text_column": DATA.text_column, "label_column": DATA.label_column}
CHECKS = {"min_per_class": DATA.min_per_class, "drop_invalid": DATA.drop_invalid}
SPLIT = {"seed": SEED, "val_frac": DATA.val_frac, "test_frac": DATA.test_frac}


def art(cls, path: Path, **metadata):  # noqa: ANN001, ANN201
    return cls(uri=str(path), metadata=dict(metadata))


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "d.csv"
    make_frame(30).to_csv(path, index=False)
    return path


@pytest.fixture
def tables(tmp_path: Path, csv: Path) -> dict[str, dsl.Dataset]:
    """ingest -> validate -> split, through the component functions."""
    raw = art(dsl.Dataset, tmp_path / "raw")
    ingest(datasets=[str(csv)], raw=raw, **COLUMNS)
    clean = art(dsl.Dataset, tmp_path / "clean")
    validate(
        raw=raw,
        clean=clean,
        report=art(dsl.Markdown, tmp_path / "report.md"),
        stats=art(dsl.Metrics, tmp_path / "stats"),
        **CHECKS,
    )
    outs = {k: art(dsl.Dataset, tmp_path / k) for k in ("train", "validation", "test")}
    split(
        clean=clean,
        train_data=outs["train"],
        validation_data=outs["validation"],
        test_data=outs["test"],
        **SPLIT,
    )
    return {"raw": raw, "clean": clean, **outs}


def test_ingest(tmp_path: Path, csv: Path) -> None:
    raw = art(dsl.Dataset, tmp_path / "raw")
    ingest(datasets=[str(csv), str(csv)], raw=raw, **COLUMNS)
    df = pd.read_parquet(raw.path)
    assert len(df) == 180 and raw.metadata["rows"] == 180
    assert list(df.columns) == ["text", "label", "_source", "_row"]


def test_validate_cleans_reports_and_versions(tables, tmp_path: Path) -> None:
    clean = tables["clean"]
    assert clean.metadata["rows"] == 90 and len(clean.metadata["dataset_version"]) == 12
    assert "Data validation: PASSED" in (tmp_path / "report.md").read_text()


def test_validate_fails_with_report(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"text": ["fine", " ", "ok"], "label": ["positive", "negative", "meh"]}).to_csv(
        bad, index=False
    )
    raw = art(dsl.Dataset, tmp_path / "raw")
    ingest(datasets=[str(bad)], raw=raw, **COLUMNS)
    report = art(dsl.Markdown, tmp_path / "report.md")
    with pytest.raises(ValidationFailed, match="empty_text"):
        validate(
            raw=raw,
            clean=art(dsl.Dataset, tmp_path / "clean"),
            report=report,
            stats=art(dsl.Metrics, tmp_path / "stats"),
            min_per_class=1,
            drop_invalid=False,
        )
    assert "FAILED" in Path(report.path).read_text()


def test_split(tables) -> None:
    rows = {k: tables[k].metadata["rows"] for k in ("train", "validation", "test")}
    assert rows == {"train": 63, "validation": 9, "test": 18}
    assert tables["test"].metadata["dataset_version"] == tables["clean"].metadata["dataset_version"]
    assert len(pd.read_parquet(tables["test"].path)) == 18


def _train(
    tables,
    tmp_path: Path,
    name: str = "model",
    track: bool = False,
    model_type: str = "tfidf-logreg",
    base_model: str = "tiny-distilbert",
    hyperparameters: dict | None = None,
) -> dsl.Model:
    model = art(dsl.Model, tmp_path / name)
    train(
        train_data=tables["train"],
        validation_data=tables["validation"],
        model=model,
        model_type=model_type,
        base_model=base_model,
        hyperparameters=hyperparameters or {},
        seed=SEED,
        registered_model=REGISTERED_MODEL,
        track=track,
    )
    return model


def test_train_writes_a_model_directory(tables, tmp_path: Path) -> None:
    model = _train(tables, tmp_path, model_type="tfidf-logreg", hyperparameters={"c": 2.0})
    loaded = load_model(model.path)
    assert loaded.version == model.metadata["version"]
    assert loaded.manifest["params"]["c"] == 2.0
    assert loaded.manifest["dataset"]["version"] == tables["clean"].metadata["dataset_version"]
    assert model.metadata["registered_version"] == ""
    with pytest.raises(ConfigError, match=r"unknown hyperparameter\(s\) \['epoch'\]"):
        _train(tables, tmp_path, "bad", hyperparameters={"epoch": 1})
    # a transformer-only hyperparameter is unknown to the baseline: an error, never dropped
    with pytest.raises(ConfigError, match="tfidf-logreg takes: "):
        _train(tables, tmp_path, "bad", hyperparameters={"epochs": 3})


def test_train_passes_class_weights_to_the_baseline(tables, tmp_path: Path) -> None:
    """`class_weights` used to be recorded in model.json but never reach the model."""
    for flag, expected in ((False, None), (True, "balanced")):
        model = _train(tables, tmp_path, f"cw-{flag}", hyperparameters={"class_weights": flag})
        loaded = load_model(model.path)
        assert loaded.manifest["params"]["class_weights"] is flag
        assert loaded.model.pipeline.named_steps["clf"].class_weight == expected


def test_train_transformer_tiny_distilbert(tables, tmp_path: Path) -> None:
    model = _train(
        tables,
        tmp_path,
        model_type="transformer",
        base_model="tiny-distilbert",
        # KFP hands JSON numbers as floats; the student learns from the training texts alone
        # (the pipeline test runs the default transfer set)
        hyperparameters={
            "epochs": 1.0,
            "lr": 3e-3,
            "batch_size": 16.0,
            "max_length": 32.0,
            "transfer": [],
        },
    )
    assert load_model(model.path).manifest["model_type"] == "transformer"


def test_evaluate_logs_metrics_confusion_and_html(tables, tmp_path: Path) -> None:
    model = _train(tables, tmp_path, model_type="tfidf-logreg")
    metrics = art(dsl.Metrics, tmp_path / "metrics")
    confusion = art(dsl.ClassificationMetrics, tmp_path / "cm")
    report = art(dsl.HTML, tmp_path / "eval.html")
    evaluate(
        model=model, test_data=tables["test"], metrics=metrics, confusion=confusion, report=report
    )
    assert metrics.metadata["macro_f1"] > 0.8 and "recall_negative" in metrics.metadata
    cm = confusion.metadata["confusionMatrix"]
    assert [a["displayName"] for a in cm["annotationSpecs"]] == ["negative", "neutral", "positive"]
    assert sum(map(sum, (r["row"] for r in cm["rows"]))) == 18
    assert "data:image/png;base64," in Path(report.path).read_text()


def _gate(tables, tmp_path: Path, model: dsl.Model, champion: str, tag: str) -> tuple:
    decision = art(dsl.Artifact, tmp_path / f"decision-{tag}.json")
    approved = gate(
        challenger=model,
        test_data=tables["test"],
        decision=decision,
        report=art(dsl.Markdown, tmp_path / f"gate-{tag}.md"),
        gate_metrics=art(dsl.Metrics, tmp_path / f"gm-{tag}"),
        champion=champion,
        gate={"n_resamples": 1000},
        registered_model=REGISTERED_MODEL,
    )
    return approved, decision


def test_gate_returns_approved_and_writes_the_record(tables, tmp_path: Path) -> None:
    model = _train(tables, tmp_path, model_type="tfidf-logreg")
    approved, decision = _gate(tables, tmp_path, model, "none", "first")
    record = json.loads(Path(decision.path).read_text())
    assert approved is True and record["approved"] is True and record["champion"] is None
    assert decision.metadata["approved"] is True
    assert record["dataset"]["version"] == tables["clean"].metadata["dataset_version"]
    # the same model as its own champion: no improvement, so no promotion
    approved, decision = _gate(tables, tmp_path, model, model.path, "self")
    assert approved is False and "FAIL: improvement" in Path(decision.path).read_text()


def test_gate_rejects_unknown_or_out_of_range_thresholds(tables, tmp_path: Path) -> None:
    model = _train(tables, tmp_path)
    for bad, field in (({"min_detla": 0.1}, "min_detla"), ({"confidence": 1.5}, "confidence")):
        with pytest.raises(ConfigError, match=field):
            gate(
                challenger=model,
                test_data=tables["test"],
                decision=art(dsl.Artifact, tmp_path / "d.json"),
                report=art(dsl.Markdown, tmp_path / "g.md"),
                gate_metrics=art(dsl.Metrics, tmp_path / "gm"),
                champion="none",
                gate=bad,
                registered_model=REGISTERED_MODEL,
            )


def test_register_pushes_the_candidate_and_only_promotion_moves_champion(
    tables, tmp_path: Path
) -> None:
    model = _train(tables, tmp_path, model_type="tfidf-logreg", track=True)
    assert model.metadata["registered_version"] == "1"
    assert registry.version_of(registry.CHALLENGER) == "1"
    _, decision = _gate(tables, tmp_path, model, "", "first")
    store = tmp_path / "store"
    uri = register(
        model=model,
        decision=decision,
        store=str(store),
        model_name=MODEL_NAME,
        registered_model=REGISTERED_MODEL,
    )
    assert Path(uri) == store / "models" / MODEL_NAME / "1"
    assert load_model(uri).version == model.metadata["version"]
    assert registry.version_of(registry.CANDIDATE) == "1"
    assert registry.version_of(registry.CHAMPION) is None  # nothing serves it yet
    mv = mlflow.MlflowClient().get_model_version(REGISTERED_MODEL, "1")
    assert mv.tags["storage_uri"] == uri and mv.tags["gate.approved"] == "true"
    assert promote_local("1") is None
    assert registry.version_of(registry.CHAMPION) == "1"
    assert registry.version_of(registry.CANDIDATE) is None


def test_component_image_is_configurable(monkeypatch) -> None:
    monkeypatch.delenv(components.IMAGE_ENV, raising=False)
    spec = components.build().train.component_spec
    assert spec.implementation.container.image == components.DEFAULT_IMAGE
    monkeypatch.setenv(components.IMAGE_ENV, "registry.example/sentiops/components:9")
    c = components.build()
    assert c.gate.component_spec.implementation.container.image.endswith("components:9")
    assert components.build("x/y:1").ingest.component_spec.implementation.container.image == "x/y:1"
    # no pip at run time: the image already holds SentiOps and kfp
    for comp in vars(c).values():
        command = " ".join(comp.component_spec.implementation.container.command)
        assert "pip install" not in command


def test_components_chain_under_kfp_local(tmp_path: Path, csv: Path) -> None:
    """ingest -> validate -> split as kfp.local runs them: subprocesses of this interpreter."""
    c = components.build()

    @dsl.pipeline(name="chain")
    def chain(datasets: list[str]) -> dsl.Dataset:
        raw = c.ingest(datasets=datasets, **COLUMNS).outputs["raw"]
        clean = c.validate(raw=raw, **CHECKS).outputs["clean"]
        return c.split(clean=clean, **SPLIT).outputs["test_data"]

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "r"))
    test = chain(datasets=[str(csv)]).output
    assert len(pd.read_parquet(test.path)) == 18
    assert len(test.metadata["dataset_version"]) == 12
    report = next((tmp_path / "r").glob("chain-*/validate/report"))
    assert "PASSED" in report.read_text()
