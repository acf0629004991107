"""The training pipeline's stages as plain functions over files.

Each KFP component in `components/` is a few lines that turn its typed artifacts into paths and
call one function here, so the stage logic is the same under kfp.local, on a cluster and in the
unit tests. Tables travel between stages as Parquet (columns text, label, _source, _row).

    ingest -> validate -> split -> train -> evaluate -> gate -> register (on approval)
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sentiops import data as data_mod
from sentiops import modeldir, storage, tracking
from sentiops.data import LABEL, LABELS, TEXT
from sentiops.errors import ModelError, SentiOpsError, ValidationFailed
from sentiops.models import LoadedModel, load_model

if TYPE_CHECKING:  # heavy modules (torch, MLflow) load only in the stages that use them
    from sentiops.gate import Decision, GateConfig
    from sentiops.train import TrainConfig
    from sentiops.validate import Report

CHAMPION = "champion"
NO_CHAMPION = "none"


def use_endpoints(s3_endpoint: str = "", mlflow_tracking_uri: str = "") -> None:
    """Point this process at the given endpoints; empty values keep the environment's."""
    if s3_endpoint:
        os.environ["SENTIOPS_S3_ENDPOINT"] = s3_endpoint
    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _write_table(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)


def ingest(
    datasets: list[str], out: Path, text_column: str = TEXT, label_column: str = LABEL
) -> dict[str, Any]:
    """Read built-in names, files or s3:// URIs into one table."""
    df = data_mod.load(list(datasets), text_column, label_column)
    _write_table(df, out)
    return {"rows": len(df), "sources": list(datasets)}


def validate(
    inp: Path, out: Path, report_dir: Path, min_per_class: int = 10, drop_invalid: bool = False
) -> tuple[Report, str]:
    """Validate and clean; writes the report first, then raises ValidationFailed if fatal.

    Returns the report and the dataset version (content hash, as `data.snapshot` names it).
    """
    from sentiops.validate import validate as run_validate

    clean, report = run_validate(pd.read_parquet(inp), LABELS, min_per_class, drop_invalid)
    report.write(report_dir)
    if not report.ok:
        errs = "; ".join(f"{f.check}: {f.message}" for f in report.errors)
        raise ValidationFailed(
            f"data validation failed: {errs}",
            report.to_dict(),
            "fix the rows named in the validation report, or set "
            "drop_invalid to drop row-level problems",
        )
    _write_table(clean, out)
    return report, data_mod.content_hash(clean)[:12]


def split(
    inp: Path, outs: dict[str, Path], seed: int = 42, val_frac: float = 0.1, test_frac: float = 0.2
) -> dict[str, Any]:
    """Stratified train/validation/test tables; reports texts shared across splits."""
    from sentiops.split import split as run_split
    from sentiops.validate import check_overlap

    parts = run_split(pd.read_parquet(inp), seed, val_frac, test_frac)
    for name, part in parts.items():
        _write_table(part, outs[name])
    overlap = check_overlap(parts)
    return {
        "rows": {k: len(v) for k, v in parts.items()},
        "overlap": overlap.count if overlap else 0,
    }


def train_config(
    model_type: str, base_model: str, hyperparameters: dict[str, Any], seed: int, output: Path
) -> TrainConfig:
    """A TrainConfig from pipeline parameters; unknown hyperparameter names are an error."""
    from sentiops.train import TrainConfig

    allowed = set(TrainConfig.model_fields) - {
        "data",
        "output",
        "model_type",
        "base_model",
        "seed",
        "track",
        "report_dir",
        "tags",
    }
    unknown = sorted(set(hyperparameters) - allowed)
    if unknown:
        raise SentiOpsError(
            f"unknown hyperparameter(s) {unknown}",
            f"use TrainConfig fields: {', '.join(sorted(allowed))}",
        )
    return TrainConfig(
        data=["(pipeline split)"],
        output=output,
        model_type=model_type,
        base_model=base_model,
        seed=seed,
        track=False,
        **hyperparameters,
    )


def train(
    train_path: Path,
    val_path: Path,
    out: Path,
    cfg: TrainConfig,
    dataset_version: str | None,
    register_name: str | None = tracking.REGISTERED_MODEL,
    track: bool = True,
) -> dict[str, Any]:
    """Fit on the train table, score the validation table, write the model directory and
    (with `track`) log the run and register the model with the alias `challenger`."""
    from sentiops.train import train_on_splits

    cfg = cfg.model_copy(
        update={
            "output": out,
            "track": track,
            "register_name": register_name,
            "tags": cfg.tags | {"source": "pipeline"},
        }
    )
    train_df = pd.read_parquet(train_path)
    dataset = {"version": dataset_version, "source": ["pipeline"], "rows": len(train_df)}
    fitted = train_on_splits(cfg, train_df, pd.read_parquet(val_path), None, dataset, progress=True)
    return {
        "version": fitted.version,
        "model_type": cfg.model_type,
        "val_macro_f1": fitted.metrics["validation"]["macro_f1"],
        "train_seconds": round(fitted.seconds, 2),
        "registered_version": fitted.tracking.get("registered_version") or "",
        "run_id": fitted.tracking.get("run_id", ""),
    }


def evaluate(model_dir: Path, test_path: Path) -> dict[str, Any]:
    """All evaluation metrics of a model directory on the test table (with predictions)."""
    from sentiops.evaluate import evaluate as run_evaluate

    test = pd.read_parquet(test_path)
    return run_evaluate(load_model(model_dir), test[TEXT], test[LABEL])


def evaluation_html(result: dict[str, Any], title: str) -> str:
    """A self-contained HTML report: headline metrics, per-class table, confusion matrix."""
    from sentiops.evaluate import plot_confusion

    with tempfile.TemporaryDirectory() as tmp:
        png = plot_confusion(result, Path(tmp) / "cm.png", title)
        img = base64.b64encode(png.read_bytes()).decode()
    rows = "".join(
        f"<tr><td>{html.escape(lab)}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td>"
        f"<td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>"
        for lab, m in result["per_class"].items()
    )
    beh = "".join(
        f"<li>{html.escape(k)}: {b['passed']}/{b['n']} passed</li>"
        for k, b in result.get("behavioural", {}).items()
    )
    return (
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>n={result['n']}, macro-F1 <b>{result['macro_f1']:.4f}</b>, accuracy "
        f"{result['accuracy']:.4f}, ECE {result['ece']:.4f}, "
        f"{result['texts_per_sec']:.0f} texts/s</p>"
        "<table border='1' cellpadding='4'><tr><th>class</th><th>precision</th><th>recall</th>"
        f"<th>F1</th><th>support</th></tr>{rows}</table>"
        f"<h2>Confusion matrix</h2><img src='data:image/png;base64,{img}'/>"
        f"<h2>Behavioural tests</h2><ul>{beh}</ul></body></html>"
    )


def _model_dir_in(folder: Path) -> Path:
    for manifest in sorted(folder.rglob(modeldir.MANIFEST)):
        if (manifest.parent / "label_map.json").exists():
            return manifest.parent
    raise ModelError(
        f"no SentiOps model directory inside {folder}",
        "the registered MLflow model was not logged by SentiOps",
    )


def resolve_champion(
    source: str,
    dest: Path,
    registered_model: str = tracking.REGISTERED_MODEL,
) -> tuple[LoadedModel | None, str | None]:
    """The champion to beat and its registry version.

    `source`: "" = the registry's `champion` alias (none on the first run), "none" = no
    champion, anything else = a model directory or an s3:// prefix.
    """
    if source == NO_CHAMPION:
        return None, None
    if source:
        return load_model(storage.get_dir(source, dest)), None
    tracking.configure()  # raises when MLflow is unreachable: never mistake that for "no alias"
    version = tracking.get_alias_version(registered_model, CHAMPION)
    if version is None:
        return None, None
    import mlflow

    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{registered_model}/{version}", dst_path=str(dest)
    )
    return load_model(_model_dir_in(Path(local))), version


def gate(
    challenger_dir: Path,
    test_path: Path,
    cfg: GateConfig,
    champion_source: str,
    work: Path,
    dataset_version: str | None = None,
    registered_model: str = tracking.REGISTERED_MODEL,
    challenger_registry_version: str | None = None,
) -> Decision:
    """Decide on the test table; with a registry version, record the decision in MLflow."""
    from sentiops.gate import decide, record

    champion, champion_version = resolve_champion(
        champion_source, work / "champion", registered_model
    )
    test = pd.read_parquet(test_path)
    decision = decide(
        load_model(challenger_dir),
        test[TEXT],
        test[LABEL],
        champion,
        cfg,
        dataset_version,
        challenger_registry_version or None,
        champion_version,
    )
    if challenger_registry_version:
        record(decision, registered_model, challenger_registry_version)
    return decision


def register(
    model_dir: Path,
    decision: dict[str, Any],
    store: str,
    model_name: str,
    registered_model: str = tracking.REGISTERED_MODEL,
    registry_version: str | None = None,
) -> dict[str, str]:
    """Push an approved model to `<store>/models/<name>/<version>/` and make it champion.

    `store` is `s3://bucket` (MinIO on the cluster) or a local directory. The model directory's
    checksums are verified before upload and every object carries its sha256. The version is
    the MLflow registry version when there is one, else the model directory's content version.
    """
    from sentiops.gate import promote

    if not decision.get("approved"):
        raise SentiOpsError(
            "refusing to register a model the gate did not approve",
            "register runs only when the gate approves",
        )
    manifest = modeldir.read_manifest(model_dir)
    version = registry_version or str(manifest["version"])
    uri = storage.put_dir(model_dir, f"{store.rstrip('/')}/models/{model_name}/{version}")
    if registry_version:
        tracking.configure()
        promote(decision, registered_model, registry_version, storage_uri=uri)
    return {"uri": uri, "version": version, "model_version": str(manifest["version"])}
