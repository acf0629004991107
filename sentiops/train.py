"""Training: load -> validate -> snapshot -> split -> fit -> evaluate -> model dir -> MLflow."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field

from sentiops import data as data_mod
from sentiops import modeldir
from sentiops.config import Settings, get_settings
from sentiops.data import LABEL, LABELS, TEXT, Manifest
from sentiops.errors import ValidationFailed
from sentiops.evaluate import evaluate
from sentiops.models import LoadedModel, SentimentModel
from sentiops.models.transformer import DEFAULT_BASE_MODEL
from sentiops.split import split
from sentiops.validate import Finding, Report, check_overlap, normalize_text, validate


class DataConfig(BaseModel):
    data: list[str]
    text_column: str = TEXT
    label_column: str = LABEL
    seed: int = 42
    val_frac: float = 0.1
    test_frac: float = 0.2
    min_per_class: int = 10
    drop_invalid: bool = False
    # extra labelled data used for training only (never in validation/test); texts that also
    # occur in validation/test are removed from it so nothing leaks
    train_extra: list[str] = Field(default_factory=list)


class TrainConfig(DataConfig):
    """Every knob of a training run; the CLI, KFP components and tests all build this."""

    model_type: Literal["tfidf-logreg", "transformer"] = "tfidf-logreg"
    output: Path
    base_model: str = DEFAULT_BASE_MODEL
    max_train_examples: int | None = None
    # tfidf-logreg
    c: float = 4.0
    ngram_max: int = 2
    min_df: int = 1
    char_ngrams: bool = True
    # transformer
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 64
    patience: int = 2
    threads: int | None = None
    class_weights: bool = True
    # tracking
    track: bool = True
    register_name: str | None = "sentiops-sentiment"
    report_dir: Path | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    def model_params(self) -> dict[str, Any]:
        keys = (
            ["c", "ngram_max", "min_df", "char_ngrams", "class_weights", "seed"]
            if self.model_type == "tfidf-logreg"
            else [
                "base_model",
                "epochs",
                "batch_size",
                "lr",
                "weight_decay",
                "warmup_ratio",
                "max_length",
                "patience",
                "threads",
                "class_weights",
                "seed",
            ]
        )
        return {k: getattr(self, k) for k in keys}


@dataclass
class Prepared:
    splits: dict[str, pd.DataFrame]
    manifest: Manifest
    report: Report
    report_paths: tuple[Path, Path] | None = None


def prepare(
    cfg: DataConfig, report_dir: Path | None = None, settings: Settings | None = None
) -> Prepared:
    """Load, validate (raising ValidationFailed on fatal problems), snapshot and split."""
    s = settings or get_settings()
    raw = data_mod.load(cfg.data, cfg.text_column, cfg.label_column, s)
    clean, report = validate(raw, LABELS, cfg.min_per_class, cfg.drop_invalid)
    paths = None
    if report.ok:
        manifest = data_mod.snapshot(clean, "dataset", list(cfg.data), s.datasets_dir)
        splits = split(clean, cfg.seed, cfg.val_frac, cfg.test_frac)
        overlap = check_overlap(splits)
        if overlap:
            report.findings.append(overlap)
        if cfg.train_extra:
            manifest = _add_train_extra(cfg, clean, splits, report, s) or manifest
    if report_dir is not None:
        paths = report.write(report_dir)
    if not report.ok:
        errs = "; ".join(
            f"{f.check}: {f.message} (e.g. rows {', '.join(f.rows[:5])})"
            if f.rows
            else f"{f.check}: {f.message}"
            for f in report.errors
        )
        where = f" Full report: {paths[1]}" if paths else ""
        raise ValidationFailed(
            f"data validation failed: {errs}.{where}",
            report.to_dict(),
            "fix the rows named above, or pass --drop-invalid to drop row-level problems",
        )
    return Prepared(splits, manifest, report, paths)


def _add_train_extra(
    cfg: DataConfig,
    clean: pd.DataFrame,
    splits: dict[str, pd.DataFrame],
    report: Report,
    settings: Settings,
) -> Manifest | None:
    """Validate `cfg.train_extra` and append it to the train split (in place), without leaks."""
    raw = data_mod.load(cfg.train_extra, cfg.text_column, cfg.label_column, settings)
    extra, extra_report = validate(raw, LABELS, 1, cfg.drop_invalid)
    for f in extra_report.findings:
        f.check = f"train_extra.{f.check}"
        report.findings.append(f)
    if not extra_report.ok:
        report.ok = False
        return None
    held_out = {normalize_text(t) for name in ("validation", "test") for t in splits[name][TEXT]}
    leak = extra[TEXT].map(normalize_text).isin(held_out)
    kept = extra[~leak]
    report.findings.append(
        Finding(
            "train_extra",
            "info",
            f"{len(kept)} training-only rows added from {cfg.train_extra}; "
            f"{int(leak.sum())} dropped because the same text is in validation/test",
            len(kept),
        )
    )
    splits["train"] = (
        pd.concat([splits["train"], kept], ignore_index=True)
        .sample(frac=1.0, random_state=cfg.seed)
        .reset_index(drop=True)
    )
    combined = pd.concat([clean, kept], ignore_index=True)
    sources = list(cfg.data) + [f"train-only:{x}" for x in cfg.train_extra]
    return data_mod.snapshot(combined, "dataset", sources, settings.datasets_dir)


def _subsample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if not n or len(df) <= n:
        return df
    frac = n / len(df)
    parts = [
        g.sample(max(1, round(len(g) * frac)), random_state=seed)
        for _, g in df.groupby(LABEL, sort=True)
    ]
    return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def fit(
    cfg: TrainConfig, train_df: pd.DataFrame, val_df: pd.DataFrame, progress: bool = True
) -> SentimentModel:
    texts, labels = train_df[TEXT].tolist(), train_df[LABEL].tolist()
    if cfg.model_type == "tfidf-logreg":
        from sentiops.models.tfidf import TfidfModel

        return TfidfModel.fit(texts, labels, **cfg.model_params())
    from sentiops.models.transformer import TransformerModel

    return TransformerModel.fit(
        texts,
        labels,
        val_texts=val_df[TEXT].tolist(),
        val_labels=val_df[LABEL].tolist(),
        progress=progress,
        **cfg.model_params(),
    )


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
    from sentiops import tracking

    if cfg.track:
        tracking.configure(settings)  # fail fast on an unreachable MLflow, before any training
    train_df = _subsample(train_df, cfg.max_train_examples, cfg.seed)
    start = time.perf_counter()
    model = fit(cfg, train_df, val_df, progress)
    seconds = time.perf_counter() - start
    info: dict[str, Any] = {
        "model_type": cfg.model_type,
        "labels": list(model.labels),
        "params": cfg.model_params() | {"max_length": cfg.max_length},
        "dataset": dataset,
        "train_rows": len(train_df),
        "train_seconds": round(seconds, 2),
    }
    loaded = LoadedModel(model, {**info, "version": "pending"}, cfg.output)
    metrics: dict[str, Any] = {
        "validation": _strip(evaluate(loaded, val_df[TEXT], val_df[LABEL], behavioural=False))
    }
    if test_df is not None:
        metrics["test"] = _strip(evaluate(loaded, test_df[TEXT], test_df[LABEL]))
    metrics["history"] = getattr(model, "history", [])
    info["metrics"] = metrics
    modeldir.write(cfg.output, model.save, info)
    version = str(modeldir.read_manifest(cfg.output, verify=False)["version"])
    fitted = Fitted(cfg.output, version, metrics, seconds)
    if cfg.track:
        tags = {
            "model_type": cfg.model_type,
            "dataset_version": str(dataset.get("version")),
            "model_version": version,
        } | cfg.tags
        params = cfg.model_params() | {
            "data": ",".join(map(str, dataset.get("source") or [])),
            "dataset_version": dataset.get("version"),
            "train_rows": len(train_df),
        }
        with tracking.run(f"train-{cfg.model_type}", params, tags=tags) as run:
            for split_name, prefix in (("validation", "val_"), ("test", "test_")):
                if split_name in metrics:
                    tracking.log_metrics(metrics[split_name], prefix)
            tracking.log_metrics({"train_seconds": seconds})
            fitted.tracking = tracking.log_model_dir(cfg.output, cfg.register_name)
            fitted.tracking["run_id"] = run.info.run_id
    return fitted


def train(cfg: TrainConfig, settings: Settings | None = None, progress: bool = True) -> TrainResult:
    """Train one model end to end: prepare the data, then `train_on_splits`."""
    from sentiops import tracking

    s = settings or get_settings()
    if cfg.track:
        tracking.configure(s)  # fail fast on an unreachable MLflow, before reading any data
    report_dir = cfg.report_dir or cfg.output.parent / f"{cfg.output.name}-reports"
    prep = prepare(cfg, report_dir, s)
    dataset = {"version": prep.manifest.version, "source": cfg.data, "rows": prep.manifest.rows}
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
