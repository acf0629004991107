"""The main job (`make run`): fetch data -> validate -> train the baseline and the transformer ->
evaluate both on the same held-out test split -> comparison table (+ confusion-matrix plots)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sentiops.config import BASE_MODEL_PIPELINE, DATASET, EPOCHS, SEED, get_settings
from sentiops.data.datasets import BUILTIN, LABEL, TEXT, fetch_builtin
from sentiops.data.prepare import prepare
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


def run(
    workdir: Path,
    dataset: str = DATASET,
    base_model: str = BASE_MODEL_PIPELINE,
    epochs: int = EPOCHS,
    max_length: int = 64,
    batch_size: int = 32,
    lr: float = 5e-5,
    max_train_examples: int | None = None,
    train_extra: list[str] | None = None,
    track: bool = True,
    seed: int = SEED,
    console: Console | None = None,
) -> list[Row]:
    con = console or Console()
    settings = get_settings()
    workdir.mkdir(parents=True, exist_ok=True)
    con.rule("1/5 data")
    for name in BUILTIN:
        df = fetch_builtin(name, settings)
        con.print(f"{name}: {len(df)} rows, labels {df[LABEL].value_counts().to_dict()}")
    con.rule("2/5 validate")
    common: dict[str, Any] = {
        "data": [dataset],
        "seed": seed,
        "track": track,
        "train_extra": train_extra or [],
    }
    prep = prepare(TrainConfig(output=workdir / "unused", **common), workdir / "reports", settings)
    con.print(
        f"dataset version {prep.manifest.version}: {prep.report.rows_out} rows kept; "
        f"report {workdir / 'reports' / 'validation.md'}"
    )
    for f in prep.report.findings:
        con.print(f"  [{f.severity}] {f.check}: {f.count} — {f.message}")
    models = {
        "baseline": TrainConfig(
            output=workdir / "models" / "baseline", model_type="tfidf-logreg", **common
        ),
        "transformer": TrainConfig(
            output=workdir / "models" / "transformer",
            model_type="transformer",
            base_model=base_model,
            epochs=epochs,
            max_length=max_length,
            batch_size=batch_size,
            lr=lr,
            max_train_examples=max_train_examples,
            **common,
        ),
    }
    con.rule("3/5 train")
    seconds = {}
    for name, cfg in models.items():
        con.print(
            f"training {name} ({cfg.model_type}"
            + (f", base model {cfg.base_model})" if cfg.model_type == "transformer" else ")")
        )
        start = time.perf_counter()
        train(cfg, settings)
        seconds[name] = time.perf_counter() - start
    con.rule("4/5 evaluate on the held-out test split")
    test = prep.splits["test"]
    rows = []
    for name, cfg in models.items():
        model = load_model(cfg.output)
        result = evaluate(model, test[TEXT], test[LABEL])
        write_report(result, workdir / "eval" / f"{name}.json")
        plot_confusion(result, workdir / "eval" / f"{name}-confusion.png", f"{name} on {dataset}")
        beh = result["behavioural"]
        rows.append(
            Row(
                name,
                cfg.model_type,
                result["macro_f1"],
                result["accuracy"],
                result["ece"],
                result["texts_per_sec"],
                seconds[name],
                sum(b["passed"] for b in beh.values()) / sum(b["n"] for b in beh.values()),
                model.version,
            )
        )
    con.rule("5/5 compare")
    con.print(results_table(rows, f"{dataset} test split (n={len(test)})"))
    (workdir / "comparison.json").write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    con.print(f"reports, plots and models under {workdir}")
    return rows
