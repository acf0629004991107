"""`sentiops drift fit | check`: the drift detector for people and scripts.

Registered on the main app in sentiops/cli/main.py (`register_commands(app)`). `fit` runs wherever
sentiops[models] is installed; `check` needs Alibi Detect, which lives in the drift
environment (.venv-drift, the drift image): run from the main environment, it re-runs itself
there when that environment exists, and otherwise says how to get it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sentiops.cli.common import console, handled

drift_app = typer.Typer(
    no_args_is_help=True,
    help="Drift detector (Alibi Detect MMD on sentence embeddings + label mix + confidence).",
)

DataOpt = Annotated[
    list[str],
    typer.Option(
        "--data",
        help="CSV/JSONL/Parquet path, s3:// URI or built-in name; repeat to concatenate",
    ),
]
TextCol = Annotated[str, typer.Option(help="column holding the text")]


def register_commands(app: typer.Typer) -> None:
    app.add_typer(drift_app, name="drift")


def _texts(specs: list[str], text_column: str) -> list[str]:
    from sentiops.data.datasets import TEXT, load  # lazy: pulls pandas

    return [str(t) for t in load(specs, text_column, label_column=None)[TEXT].tolist()]


@drift_app.command("fit")
@handled
def fit(
    *,
    model: Annotated[Path, typer.Option(help="model directory (sentiops train --output)")],
    data: DataOpt,
    output: Annotated[
        Path | None,
        typer.Option(help="model directory to write (default: --model, in place)"),
    ] = None,
    holdout: Annotated[
        list[str] | None,
        typer.Option(
            help="texts the model was NOT trained on (e.g. the validation split): the label-mix "
            "and confidence reference; default: the validation + test split that training made "
            "of --data (which must then be the model's training data)"
        ),
    ] = None,
    text_column: TextCol = "text",
    label_column: Annotated[
        str, typer.Option(help="column holding the label (to re-make the training split)")
    ] = "label",
    reference_size: Annotated[int, typer.Option(help="reference texts embedded")] = 1000,
    alpha: Annotated[float, typer.Option(help="false-alarm rate per window")] = 0.05,
    permutations: Annotated[int, typer.Option(help="MMD permutations")] = 200,
) -> None:
    """Fit the drift detector on the model's training data and store it in the model
    directory (`<output>/drift/`, under the model's checksums)."""
    from sentiops.detection import detector  # lazy: CLI startup

    if holdout:
        texts, hold, name = _texts(data, text_column), _texts(holdout, text_column), "given"
    else:
        texts, hold, name = detector.texts_for_fit(model, data, text_column, label_column)
    manifest = detector.fit_model_dir(
        model,
        texts,
        hold,
        output=output,
        holdout_name=name,
        reference_size=reference_size,
        alpha=alpha,
        permutations=permutations,
    )
    target = output or model
    console.print(
        f"drift detector fitted on {manifest['drift']['reference_size']} texts "
        f"({manifest['drift']['holdout_size']} held-out) -> {target}/drift "
        f"(model version {manifest['version']})"
    )


def _delegate(python: Path, args: list[str]) -> None:
    """Run `sentiops <args>` with the drift environment's `sentiops`."""
    exe = python.with_name("sentiops")
    cmd = [str(exe)] if exe.exists() else [str(python), "-m", "sentiops.cli"]
    env = {**os.environ, "SENTIOPS_DRIFT_DELEGATED": "1"}
    proc = subprocess.run([*cmd, *args], env=env, check=False)
    raise typer.Exit(proc.returncode)


@drift_app.command("check")
@handled
def check(
    detector: Annotated[
        Path, typer.Option(help="model directory holding the detector (drift fit --output)")
    ],
    data: DataOpt,
    window: Annotated[int, typer.Option(help="texts per window (consecutive rows)")] = 200,
    output_json: Annotated[Path | None, typer.Option(help="write the windows here")] = None,
    text_column: TextCol = "text",
) -> None:
    """Test consecutive windows of --data against the detector; writes
    {"windows": [{"p_value", "is_drift", "tests": ...}], "drift_rate"}."""
    from sentiops.detection import environment, windows  # lazy: CLI startup
    from sentiops.detection.detector import TESTS  # lazy: CLI startup

    if not windows.alibi_available():
        python = environment.drift_python()
        if python is not None and not os.environ.get("SENTIOPS_DRIFT_DELEGATED"):
            args = ["drift", "check", "--detector", str(detector), "--window", str(window)]
            args += [x for d in data for x in ("--data", d)] + ["--text-column", text_column]
            _delegate(python, args + (["--output-json", str(output_json)] if output_json else []))
        windows._need_alibi()  # raises DriftError with the hint
    texts = _texts(data, text_column)
    result = windows.check(detector, texts, window)
    if output_json:
        output_json.parent.mkdir(parents=True, exist_ok=True)
        output_json.write_text(json.dumps(result, indent=2))
    table = Table(title=f"drift per window of {window} (alpha {result['alpha']}, Bonferroni)")
    for col in ("window", "p_value", *TESTS, "drift"):
        table.add_column(col)
    for w in result["windows"]:
        table.add_row(
            str(w["index"]),
            f"{w['p_value']:.3g}",
            *(f"{w['tests'][t]['p_value']:.3g}" for t in TESTS),
            "DRIFT" if w["is_drift"] else "-",
        )
    console.print(table)
    console.print(f"drift rate: {result['drift_rate']:.2f} over {len(result['windows'])} windows")


if __name__ == "__main__":  # pragma: no cover
    drift_app()
