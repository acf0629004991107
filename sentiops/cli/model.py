"""`sentiops train | evaluate | predict | tune | quickstart`: one model, for people and scripts;
`sentiops model sign | verify | key`: model signatures, for whoever holds the signing key
(`sentiops.security.signing`).

Contract other tools rely on (options may be added, these stay):
  sentiops train --data PATH [--data PATH ...] --model-type tfidf-logreg|transformer --output DIR
                 [--base-model X]
  sentiops evaluate --model DIR --data PATH --output-json FILE
Errors print what was wrong and how to fix it, and exit non-zero (see sentiops.errors).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sentiops.cli import options
from sentiops.cli.common import console, err, handled
from sentiops.cli.options import DataOpt
from sentiops.config import BASE_MODEL_PIPELINE, BASE_MODEL_TEST, DATASET
from sentiops.errors import ConfigError
from sentiops.evaluation.evaluate import evaluate as run_eval
from sentiops.evaluation.evaluate import plot_confusion, write_report
from sentiops.models import MODEL_TYPES, load_model, modeldir
from sentiops.models import predict as run_predict
from sentiops.params import DataConfig, TrainConfig, parse
from sentiops.security import signing

model_app = typer.Typer(
    no_args_is_help=True,
    help="Model directory signatures (Ed25519): sign, verify, show the signing key.",
)


def register_commands(app: typer.Typer) -> None:
    """`train`, `evaluate`, `predict`, `tune` and `quickstart` on the main `sentiops` app, and
    the `model` sub-app (sign, verify, key)."""
    for command in (train, evaluate, predict, tune, quickstart):
        app.command()(command)
    app.add_typer(model_app, name="model")


TRAIN_REQUIRED = ("data", "model_type", "output")


@handled
@options.with_options(*options.train_options(required=TRAIN_REQUIRED), own_last=True)
def train(
    *,
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(help="JSON file with TrainConfig fields; flags given explicitly win"),
    ] = None,
    **fields: Any,
) -> None:
    """Train one model and write its model directory.

    Every option is a field of sentiops.params.TrainConfig, which says what it does; a model
    type reads the fields named by its fit's parameters (sentiops.models.hyperparameters)."""
    from sentiops.training.train import train as run_train  # lazy: pulls sklearn

    if fields["model_type"] not in MODEL_TYPES:
        err.print(
            f"[bold red]error:[/] unknown --model-type {fields['model_type']!r}; "
            f"use one of: {', '.join(MODEL_TYPES)}"
        )
        raise typer.Exit(2)
    from_file: dict[str, Any] = _json_file(config) if config else {}
    given = {
        k: v
        for k, v in options.config_values(TrainConfig, fields).items()
        if k not in from_file or options.explicit(ctx, k)
    }
    what = f"training config{f' {config}' if config else ''}"
    result = run_train(parse(TrainConfig, from_file | given, what))
    _print_trained(result, fields["model_type"])


def _print_trained(result: Any, model_type: str) -> None:
    test = result.metrics["test"]
    table = Table(title=f"{model_type} -> {result.model_dir}")
    table.add_column("split")
    table.add_column("macro-F1", justify="right")
    table.add_column("accuracy", justify="right")
    for split_name in ("validation", "test"):
        m = result.metrics[split_name]
        table.add_row(split_name, f"{m['macro_f1']:.4f}", f"{m['accuracy']:.4f}")
    console.print(table)
    console.print(
        f"dataset version {result.dataset.version}, trained in {result.seconds:.1f}s, "
        f"test ECE {test['ece']:.3f}"
    )
    if result.tracking:
        console.print(f"MLflow: {result.tracking}")


def _json_file(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", "pass a JSON object file") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{path} holds {type(value).__name__}, not a JSON object", "")
    return value


def print_metrics(result: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    for lab, m in result["per_class"].items():
        table.add_row(
            lab, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"])
        )
    console.print(table)
    console.print(
        f"n={result['n']}  accuracy={result['accuracy']:.4f}  "
        f"macro-F1={result['macro_f1']:.4f}  ECE={result['ece']:.4f}  "
        f"{result['texts_per_sec']:.0f} texts/s"
    )
    for kind, b in result.get("behavioural", {}).items():
        console.print(f"behavioural {kind}: {b['passed']}/{b['n']} passed")


@handled
@options.with_options(
    *(options.field_option(DataConfig, name) for name in ("text_column", "label_column", "seed")),
    options.field_option(DataConfig, "min_per_class", default=1),
    options.field_option(DataConfig, "drop_invalid"),
)
def evaluate(
    *,
    model: Annotated[Path, typer.Option(help="model directory")],
    data: DataOpt,
    output_json: Annotated[Path, typer.Option(help="metrics JSON to write")],
    split: Annotated[
        str,
        typer.Option(
            help="all | train | validation | test (the split `train` used, rebuilt from the seed)"
        ),
    ] = "all",
    plot: Annotated[Path | None, typer.Option(help="confusion-matrix PNG")] = None,
    **fields: Any,
) -> None:
    """Evaluate a model directory on labelled data; writes JSON and prints a table."""
    from sentiops.data.datasets import LABEL, TEXT  # lazy: pulls pandas
    from sentiops.data.prepare import labelled_split  # lazy: pulls sklearn

    loaded = load_model(model)
    df, manifest = labelled_split(DataConfig(data=data, **fields), split)
    result = run_eval(loaded, df[TEXT], df[LABEL])
    result["dataset_version"] = manifest.version
    result["split"] = split
    write_report(result, output_json)
    if plot:
        plot_confusion(result, plot)
    print_metrics(result, f"{loaded.manifest['model_type']} {loaded.version} on {split}")


@handled
def predict(
    *,
    model: Annotated[Path, typer.Option(help="model directory")],
    texts: Annotated[list[str], typer.Argument(help="texts to classify")],
) -> None:
    """Classify texts with a model directory."""
    loaded = load_model(model)
    for text, p in zip(texts, run_predict(loaded, texts), strict=True):
        console.print(f"{p.label:9s} {p.confidence:.3f}  {text}", highlight=False)


@handled
@options.with_options(
    options.field_option(TrainConfig, "data", required=True),
    options.field_option(TrainConfig, "model_type"),
    options.field_option(
        TrainConfig, "base_model", default=BASE_MODEL_TEST, help="(here: the tiny test model)"
    ),
    options.field_option(TrainConfig, "epochs", default=1),
    options.field_option(TrainConfig, "track"),
    options.field_option(TrainConfig, "seed"),
)
def tune(
    *,
    trials: Annotated[int, typer.Option(help="number of Optuna trials")] = 10,
    output_json: Annotated[Path | None, typer.Option(help="best params + trials")] = None,
    **fields: Any,
) -> None:
    """Search hyperparameters (Optuna, seeded); each trial is an MLflow child run."""
    from sentiops.training.tune import tune as run_tune  # lazy: pulls sklearn

    cfg = parse(TrainConfig, {**fields, "output": Path("unused")})
    result = run_tune(cfg, trials, progress=sys.stderr.isatty())
    table = Table(title=f"Optuna: {trials} trials of {cfg.model_type}")
    table.add_column("trial", justify="right")
    table.add_column("val macro-F1", justify="right")
    table.add_column("params")
    for t in result["trials"]:
        table.add_row(str(t["number"]), f"{t['value']:.4f}", json.dumps(t["params"]))
    console.print(table)
    console.print(f"best: {result['best_val_macro_f1']:.4f} with {result['best_params']}")
    if output_json:
        output_json.write_text(json.dumps(result, indent=2))


@handled
@options.with_options(
    options.field_option(TrainConfig, "base_model", default=BASE_MODEL_PIPELINE),
    *(
        options.field_option(TrainConfig, name)
        for name in ("epochs", "max_length", "max_train_examples", "train_extra", "track")
    ),
)
def quickstart(
    *,
    workdir: Annotated[Path, typer.Option(help="where data, models and reports go")] = Path(
        ".sentiops"
    ),
    dataset: Annotated[str, typer.Option(help="the data both models learn from")] = DATASET,
    **fields: Any,
) -> None:
    """No pipeline, no servers (`make quickstart`): data -> validate -> train the TF-IDF
    baseline and the transformer in this process -> evaluate both -> compare. The main job is
    `make run` (`sentiops loop`)."""
    from sentiops.local.quickstart import run  # lazy: pulls sklearn

    values = options.config_values(TrainConfig, fields)
    run(workdir, dataset=dataset, console=console, **values)


# ------------------------------------------------------------------------------ signatures
KeyOpt = Annotated[
    Path | None,
    typer.Option("--key", help="key file (PEM); default: the configured one (see `model key`)"),
]


@model_app.command("sign")
@handled
def model_sign(
    model: Annotated[Path, typer.Argument(help="model directory (local)")],
    key: KeyOpt = None,
) -> None:
    """Sign a model directory: every file is checked against model.json first, then model.json
    is signed with the private key (--key, else SENTIOPS_MODEL_SIGNING_KEY_FILE, else this
    machine's own). Sign only models you trust: the signature is what lets them load."""
    signer = signing.load_signing_key(key) if key else signing.signing_key()
    before = modeldir.read_signature(model)
    record = modeldir.sign(model, signer)
    manifest = modeldir.read_manifest(model, verify=False, check_signature=False)
    was = ""
    if before and before.get("key_id") != record["key_id"]:
        was = f" (it was signed by key {signing.short(str(before.get('key_id')))})"
    console.print(
        f"signed {model}: {manifest.get('model_type')} version {manifest.get('version')}, "
        f"{len(manifest.get('files', {}))} files, by key {signing.short(signer.key_id)} "
        f"({signer.path}){was}",
        highlight=False,
        soft_wrap=True,
    )


@model_app.command("verify")
@handled
def model_verify(
    model: Annotated[str, typer.Argument(help="model directory or s3:// prefix")],
    key: KeyOpt = None,
) -> None:
    """Check a model directory as a loader does: its signature against the public key (--key,
    else the configured verify key), then every file against model.json. Exit 4 with the
    reason when it would be refused."""
    from sentiops.store.storage import local_model  # lazy: pulls minio

    verifier = signing.load_verify_key(key) if key else signing.verify_key()
    if verifier is None:
        raise ConfigError(
            "no key to verify with: none is configured on this machine",
            f"pass --key PUBLIC_KEY.pem or set {signing.VERIFY_KEY_ENV}",
        )
    folder = local_model(model)
    manifest = modeldir.read_manifest(folder, verify=True, key=verifier)
    record = modeldir.read_signature(folder) or {}
    console.print(
        f"verified {model}: signed by key {signing.short(str(record.get('key_id')))} "
        f"({verifier.source}); "
        f"{len(manifest.get('files', {}))} files match model.json "
        f"({manifest.get('model_type')} version {manifest.get('version')})",
        highlight=False,
        soft_wrap=True,
    )


@model_app.command("key")
@handled
def model_key(
    public: Annotated[bool, typer.Option("--public", help="print the public key (PEM)")] = False,
) -> None:
    """The key models are signed with here (made on first use when none is configured) and
    the one they are verified with; --public prints the public key to give to verifiers."""
    signer = signing.signing_key()
    if public:
        console.print(signing.public_pem(signer.public).decode().strip(), highlight=False)
        return
    verifier = signing.verify_key()
    console.print(f"signing key  {signing.short(signer.key_id)}  {signer.path}", highlight=False)
    console.print(
        "verify key   " + (f"{verifier.ids}  {verifier.source}" if verifier else "none (off)"),
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"a cluster's pipeline signs with the Secret sentiops-model-signing (key signing.key): "
        f"kubectl -n sentiops create secret generic sentiops-model-signing "
        f"--from-file=signing.key={signer.path}",
        highlight=False,
        soft_wrap=True,
    )
