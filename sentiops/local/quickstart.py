"""`sentiops quickstart` (`make quickstart`), no pipeline and no servers: fetch data -> validate ->
train the baseline and the transformer -> evaluate both on the same held-out test split ->
comparison table (+ confusion-matrix plots). The main job is `make run` (`sentiops loop`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from sentiops.config import BASE_MODEL_PIPELINE, DATASET, Settings, get_settings
from sentiops.data.datasets import BUILTIN, LABEL, TEXT, fetch_builtin
from sentiops.data.prepare import Prepared, prepare
from sentiops.evaluation.evaluate import evaluate, plot_confusion, write_report
from sentiops.models import load_model
from sentiops.params import TrainConfig
from sentiops.training.train import train


@dataclass
class Row:
    model: str
    model_type: str
    macro_f1: float
    accuracy: float
    ece: float
    texts_per_sec: float
    train_seconds: float
    behavioural: float
    version: str


def results_table(rows: list[Row], title: str) -> Table:
    """One row per trained model: quality, calibration, speed, behavioural pass rate."""
    table = Table(title=title)
    for col in (
        "model",
        "type",
        "macro-F1",
        "accuracy",
        "ECE",
        "texts/s",
        "train s",
        "behavioural",
        "version",
    ):
        table.add_column(col, justify="left" if col in ("model", "type", "version") else "right")
    for r in rows:
        table.add_row(
            r.model,
            r.model_type,
            f"{r.macro_f1:.3f}",
            f"{r.accuracy:.3f}",
            f"{r.ece:.3f}",
            f"{r.texts_per_sec:.0f}",
            f"{r.train_seconds:.0f}",
            f"{r.behavioural:.2f}",
            r.version,
        )
    return table


#: TrainConfig fields both models take; the other fields given to `run` are the transformer's.
COMMON = ("seed", "track", "train_extra")


def run(
    workdir: Path,
    *,
    dataset: str = DATASET,
    base_model: str = BASE_MODEL_PIPELINE,
    console: Console | None = None,
    **fields: Any,
) -> list[Row]:
    """Both models on `dataset`, compared; `fields` are TrainConfig fields (COMMON ones for
    both models, the rest for the transformer, e.g. epochs, max_length, max_train_examples)."""
    con = console or Console()
    settings = get_settings()
    workdir.mkdir(parents=True, exist_ok=True)
    con.rule("1/5 data")
    for name in BUILTIN:
        df = fetch_builtin(name, settings)
        con.print(f"{name}: {len(df)} rows, labels {df[LABEL].value_counts().to_dict()}")
    con.rule("2/5 validate")
    common = {"data": [dataset]} | {k: fields.pop(k) for k in COMMON if k in fields}
    prep = _validate(con, workdir, common, settings)
    models = {
        "baseline": TrainConfig(
            output=workdir / "models" / "baseline", model_type="tfidf-logreg", **common
        ),
        "transformer": TrainConfig(
            output=workdir / "models" / "transformer",
            model_type="transformer",
            base_model=base_model,
            **fields,
            **common,
        ),
    }
    con.rule("3/5 train")
    seconds = {name: _train(con, cfg, settings) for name, cfg in models.items()}
    con.rule("4/5 evaluate on the held-out test split")
    test = prep.splits["test"]
    rows = [
        _evaluate(name, cfg, test, workdir, f"{name} on {dataset}", seconds[name])
        for name, cfg in models.items()
    ]
    con.rule("5/5 compare")
    con.print(results_table(rows, f"{dataset} test split (n={len(test)})"))
    (workdir / "comparison.json").write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    con.print(f"reports, plots and models under {workdir}")
    return rows


def _validate(con: Console, workdir: Path, common: dict[str, Any], settings: Settings) -> Prepared:
    """The data both models train on, validated and split once; its findings printed."""
    prep = prepare(TrainConfig(output=workdir / "unused", **common), workdir / "reports", settings)
    con.print(
        f"dataset version {prep.manifest.version}: {prep.report.rows_out} rows kept; "
        f"report {workdir / 'reports' / 'validation.md'}"
    )
    for f in prep.report.findings:
        con.print(f"  [{f.severity}] {f.check}: {f.count} — {f.message}")
    return prep


def _train(con: Console, cfg: TrainConfig, settings: Settings) -> float:
    """Train one model; the seconds it took."""
    base = f", base model {cfg.base_model}" if cfg.model_type == "transformer" else ""
    con.print(f"training {cfg.output.name} ({cfg.model_type}{base})")
    start = time.perf_counter()
    train(cfg, settings)
    return time.perf_counter() - start


def _evaluate(
    name: str, cfg: TrainConfig, test: pd.DataFrame, workdir: Path, title: str, seconds: float
) -> Row:
    """One trained model on the test split: its report and confusion plot, and its row."""
    model = load_model(cfg.output)
    result = evaluate(model, test[TEXT], test[LABEL])
    write_report(result, workdir / "eval" / f"{name}.json")
    plot_confusion(result, workdir / "eval" / f"{name}-confusion.png", title)
    beh = result["behavioural"]
    return Row(
        model=name,
        model_type=cfg.model_type,
        macro_f1=result["macro_f1"],
        accuracy=result["accuracy"],
        ece=result["ece"],
        texts_per_sec=result["texts_per_sec"],
        train_seconds=seconds,
        behavioural=sum(b["passed"] for b in beh.values()) / sum(b["n"] for b in beh.values()),
        version=model.version,
    )
