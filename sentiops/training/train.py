"""Training: fit a model type on prepared splits, score it, write the model directory.

Data preparation lives in `sentiops.data.prepare`, model types in `sentiops.models` (one registry),
run tracking in `sentiops.registry.tracking`; this module only fits and packages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentiops.config import Settings, get_settings
from sentiops.data.datasets import BUILTIN, LABEL, SCORE, SOURCE, TEXT, Manifest
from sentiops.data.prepare import prepare
from sentiops.data.split import original_rows
from sentiops.data.validate import Report
from sentiops.detection import detector
from sentiops.errors import DriftError
from sentiops.estimation import calibration
from sentiops.evaluation.evaluate import evaluate
from sentiops.models import SentimentModel, fit_model, load_model, modeldir
from sentiops.params import DataConfig, TrainConfig
from sentiops.registry import lifecycle as registry
from sentiops.registry import tracking
from sentiops.security import signing
from sentiops.training import warm_start
from sentiops.training.transfer import transfer_set

__all__ = ["DataConfig", "Fitted", "TrainConfig", "TrainResult", "fit", "train", "train_on_splits"]


def _subsample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most `n` rows, stratified by label; rows of added sources (live labels, see
    `sentiops.data.split`) are always kept, only the original data is thinned out."""
    if not n or len(df) <= n:
        return df

    original = original_rows(df) if SOURCE in df.columns else pd.Series(True, index=df.index)
    keep, pool = df[~original], df[original]
    frac = max(n - len(keep), 1) / max(len(pool), 1)
    parts = [keep] + [
        g.sample(max(1, round(len(g) * frac)), random_state=seed)
        for _, g in pool.groupby(LABEL, sort=True)
    ]
    return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def fit(
    cfg: TrainConfig, train_df: pd.DataFrame, val_df: pd.DataFrame, progress: bool = True
) -> SentimentModel:
    """Fit `cfg.model_type` with its hyperparameters from `cfg` (validation data for early
    stopping goes to the model types that use it; `--base-model champion` resolved to the
    champion's checkpoint: `warm_start`)."""
    params = cfg.model_params()
    if "base_model" in params:
        params["base_model"] = warm_start.base_model(params["base_model"])
    return fit_model(
        cfg.model_type,
        train_df[TEXT].tolist(),
        train_df[LABEL].tolist(),
        params,
        val_texts=val_df[TEXT].tolist(),
        val_labels=val_df[LABEL].tolist(),
        scores=train_df[SCORE].tolist() if SCORE in train_df.columns else None,
        sample_weight=row_weights(train_df, cfg.added_share),
        progress=progress,
    )


def row_weights(df: pd.DataFrame, added_share: float) -> list[float] | None:
    """Per-row training weights: the rows of added sources (live labels, see
    `sentiops.data.split.original_rows`) together weigh at least `added_share` of the whole, each
    original row 1. A few hundred labels of new traffic beside thousands of original rows
    would otherwise hardly move the model (the gate weighs both groups of its test set the
    same). None when there is nothing to weigh up (no added rows, or they weigh enough)."""

    if added_share <= 0 or SOURCE not in df.columns or not len(df):
        return None
    original = original_rows(df)
    n_original, n_added = int(original.sum()), int((~original).sum())
    if not n_original or not n_added:
        return None
    weight = added_share * n_original / ((1.0 - added_share) * n_added)
    if weight <= 1.0:
        return None
    return [1.0 if o else weight for o in original]


@dataclass
class Fitted:
    """A trained model directory with its metrics and (when tracked) its MLflow records."""

    model_dir: Path
    version: str
    metrics: dict[str, Any]
    seconds: float
    tracking: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, Any]
    dataset: Manifest
    report: Report
    seconds: float
    tracking: dict[str, Any] = field(default_factory=dict)


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "predictions"}


def train_on_splits(
    cfg: TrainConfig,
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    test_df: pd.DataFrame | None,
    dataset: dict[str, Any],
    settings: Settings | None = None,
    progress: bool = True,
) -> Fitted:
    """Fit on `train_df`, score validation (and test, with the behavioural suite, if given),
    write `cfg.output` atomically and, with `cfg.track`, log the run and register the model
    (alias `challenger`). Shared by `train()` and the pipeline's train stage."""
    if cfg.track:
        tracking.configure(settings)  # fail fast on an unreachable MLflow, before any training

    signing.signing_key()  # and on a missing or broken model signing key (modeldir.write signs)

    first = str(train_df[SOURCE].iloc[0]) if SOURCE in train_df.columns and len(train_df) else None
    train_df = _subsample(train_df, cfg.max_train_examples, cfg.seed)
    start = time.perf_counter()
    model = fit(cfg, train_df, val_df, progress)
    seconds = time.perf_counter() - start
    weights = row_weights(train_df, cfg.added_share)
    params = cfg.model_params()
    info: dict[str, Any] = {
        "model_type": cfg.model_type,
        "labels": list(model.labels),
        "params": params | {"max_length": cfg.max_length},
        "dataset": dataset,
        "train_rows": len(train_df),
        "added_weight": round(max(weights), 3) if weights else 1.0,
        "train_seconds": round(seconds, 2),
    }
    modeldir.write(cfg.output, model.save, info)
    exclude = val_df[TEXT].tolist() + (test_df[TEXT].tolist() if test_df is not None else [])
    _package_serving_form(model, cfg, train_df, val_df, exclude, settings)
    if cfg.calibration != "none":  # before the detector: it records served probabilities
        calibrate(cfg.output, val_df, cfg.calibration, traffic_like(val_df, first), cfg.seed)
    if cfg.drift_detector:
        fit_drift_detector(
            cfg.output,
            traffic_like(train_df, first)[TEXT].tolist(),
            traffic_like(val_df, first)[TEXT].tolist(),
        )
    loaded = load_model(cfg.output)
    metrics: dict[str, Any] = {
        "validation": _strip(evaluate(loaded, val_df[TEXT], val_df[LABEL], behavioural=False))
    }
    if test_df is not None:
        metrics["test"] = _strip(evaluate(loaded, test_df[TEXT], test_df[LABEL]))
    metrics["history"] = getattr(model, "history", [])
    manifest = modeldir.extend(cfg.output, lambda _: None, {"metrics": metrics})
    version = str(manifest["version"])
    fitted = Fitted(cfg.output, version, metrics, seconds)
    if cfg.track:
        fitted.tracking = _log_training(
            cfg,
            dataset,
            params,
            version=version,
            train_rows=len(train_df),
            metrics=metrics,
            seconds=seconds,
        )
    return fitted


def _package_serving_form(
    model: SentimentModel,
    cfg: TrainConfig,
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    exclude: list[str],
    settings: Settings | None = None,
) -> None:
    """The serving form of a model type that has one (`package`: ONNX, int8, a distilled
    student on its transfer set: `sentiops.training.transfer`, none of the `exclude` texts),
    chosen on the validation split within `cfg.serving_tolerance`."""
    package = getattr(type(model), "package", None)
    if package is not None and cfg.serving_form != "pytorch":
        # the serving form is made before any scoring: what is evaluated (here, and by the
        # evaluate step and the gate) is what the predictor will serve
        forms: tuple[str, ...] | None = (
            None if cfg.serving_form == "auto" else (cfg.serving_form, "pytorch")
        )
        if cfg.serving_form == "student-int8":  # a student outside the tolerance: the teacher
            forms = ("student-int8", "onnx-int8", "onnx-fp32", "pytorch")
        if cfg.serving_form == "auto" and cfg.distill_epochs == 0:  # no student asked for
            forms = ("onnx-int8", "onnx-fp32", "pytorch")
        texts, labels = train_df[TEXT].tolist(), train_df[LABEL].tolist()
        record: dict[str, Any] = {}
        if cfg.distill_epochs and (forms is None or "student-int8" in forms):
            student = transfer_set(
                texts,
                labels,
                sources=cfg.transfer,
                exclude=exclude,
                trained_on=train_df[SOURCE].unique() if SOURCE in train_df.columns else (),
                limit=cfg.transfer_max,
                seed=cfg.seed,
                settings=settings,
            )
            texts, labels, record = student.texts, student.labels, student.record
        package(
            cfg.output,
            val_df[TEXT].tolist(),
            val_df[LABEL].tolist(),
            cfg.serving_tolerance,
            forms,
            texts,
            labels,
            {"epochs": cfg.distill_epochs, "transfer": record},
        )


def _log_training(
    cfg: TrainConfig,
    dataset: dict[str, Any],
    params: dict[str, Any],
    *,
    version: str,
    train_rows: int,
    metrics: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """Log the training run of `cfg.output` (model `version`) to MLflow and register the model
    as `cfg.register_name` (alias `challenger`)."""

    tracked: dict[str, Any] = registry.log_training(
        cfg.output,
        run_name=f"train-{cfg.model_type}",
        params=params
        | {
            "data": ",".join(map(str, dataset.get("source") or [])),
            "dataset_version": dataset.get("version"),
            "train_rows": train_rows,
        },
        tags={
            "model_type": cfg.model_type,
            "dataset_version": str(dataset.get("version")),
            "model_version": version,
        }
        | cfg.tags,
        metrics={k: metrics[k] for k in ("validation", "test") if k in metrics}
        | {"train": {"seconds": seconds}},
        register_as=cfg.register_name,
    )
    return tracked


def traffic_like(df: pd.DataFrame, first: str | None = None) -> pd.DataFrame:
    """The rows that stand for the traffic the model will serve: the first data source (the
    data like the traffic, e.g. tweets) and live labels, not the other built-in datasets a
    run learns from besides (product reviews, editorials): a detector whose reference is the
    mix of every training domain flags pure tweet traffic as drift. All rows when there are
    no sources, or fewer than 20 such rows. `first`: the first source (default: the first
    row's, which is the first source's in every split)."""
    if SOURCE not in df.columns or not len(df):
        return df
    first = first or str(df[SOURCE].iloc[0])
    keep = ~df[SOURCE].isin([b for b in BUILTIN if b != first])  # other built-in datasets out
    return df[keep] if int(keep.sum()) >= 20 else df


def calibrate(
    model_dir: Path,
    val_df: pd.DataFrame,
    method: str = "temperature",
    traffic: pd.DataFrame | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Part of packaging, after the serving form is made and before anything scores the model:
    fit a calibrator (`sentiops.estimation.calibration`, `method`) on the validation split's
    probabilities of the form that serves, store it in the model directory under its checksums
    (`modeldir.extend`: `calibration.json` + the manifest's `calibration` record: ECE, Brier
    score and log-loss before and after on held-out halves) and return the record. From then
    on `load_model` serves calibrated probabilities. `traffic`: the validation rows like the
    traffic (`traffic_like`): their accuracy is the version's reference for the estimated
    accuracy (`calibration.reference`, the sidecar's `sentiops_validation_accuracy`). Too few
    labelled rows: no calibrator, the record says why."""

    loaded = load_model(model_dir)
    texts, gold = val_df[TEXT].astype(str).tolist(), val_df[LABEL].astype(str).tolist()
    batches = [
        loaded.predict_proba(texts[i : i + 256], calibrated=False)
        for i in range(0, len(texts), 256)
    ]
    raw = np.concatenate(batches) if batches else np.zeros((0, len(loaded.labels)))
    calibrator, record = calibration.fit_and_measure(raw, gold, loaded.labels, method, seed)
    if calibrator is not None and traffic is not None and len(traffic):
        rows = np.flatnonzero(val_df.index.isin(traffic.index))
        served = calibrator.apply(raw[rows])
        q = calibration.quality(served, [gold[i] for i in rows], loaded.labels)
        record["reference"] = {
            "rows": len(rows),
            "accuracy": q["accuracy"],
            "estimated_accuracy": q["mean_confidence"],
            "what": "validation rows like the traffic (its first data "
            "source and live labels): the version's reference for its estimated accuracy",
        }

    def add(tmp: Path) -> None:
        if calibrator is not None:
            calibration.save(tmp, calibrator)

    modeldir.extend(model_dir, add, {"calibration": record})
    return record


def fit_drift_detector(model_dir: Path, train_texts: list[str], val_texts: list[str]) -> None:
    """The pipeline's drift step, part of packaging: the detector is fitted on the training
    texts (label-mix and confidence references from the validation texts) and stored in the
    model directory under its checksums before the model is evaluated, registered and gated —
    the model that is gated ships the detector that will watch it."""

    try:
        detector.fit_model_dir(model_dir, train_texts, holdout_texts=val_texts)
    except DriftError as exc:  # too little data for a detector: the model is still usable
        modeldir.extend(model_dir, lambda _: None, {"drift": {"skipped": exc.message}})


def train(cfg: TrainConfig, settings: Settings | None = None, progress: bool = True) -> TrainResult:
    """Train one model end to end: prepare the data, then `train_on_splits`."""
    s = settings or get_settings()
    if cfg.track:
        tracking.configure(s)  # fail fast on an unreachable MLflow, before reading any data
    report_dir = cfg.report_dir or cfg.output.parent / f"{cfg.output.name}-reports"
    prep = prepare(cfg, report_dir, s)
    dataset = {
        "version": prep.manifest.version,
        "source": cfg.data,
        "rows": prep.manifest.rows,
        "split": {"seed": cfg.seed, "val_frac": cfg.val_frac, "test_frac": cfg.test_frac},
    }
    fitted = train_on_splits(
        cfg,
        prep.splits["train"],
        prep.splits["validation"],
        prep.splits["test"],
        dataset,
        s,
        progress,
    )
    return TrainResult(
        fitted.model_dir,
        fitted.metrics,
        prep.manifest,
        prep.report,
        fitted.seconds,
        fitted.tracking,
    )
