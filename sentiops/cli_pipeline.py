"""`sentiops gate` and `sentiops pipeline {run,demo,submit,compile}`.

Registered on the main app in sentiops/cli.py with:
    from sentiops.cli_pipeline import register_commands  # noqa: E402
    register_commands(app)

Contract (options may be added, these stay):
  sentiops gate --champion DIR --challenger DIR --data PATH --output-json FILE
      writes {"approved": bool, "delta_macro_f1": float, "reasons": [str, ...], ...}; exit 0
      whether or not the challenger is approved (non-zero only for errors).
  sentiops pipeline run --local [...]          kfp.local SubprocessRunner, this interpreter
  sentiops pipeline submit --host URL [...]    kfp.Client; --schedule CRON for a recurring run
  sentiops pipeline compile [--output FILE]    the pipeline as KFP YAML (default ./sentiops.yaml)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from sentiops.cli_common import console, err, handled
from sentiops.config import BASE_MODEL_PIPELINE, DATASET, REGISTERED_MODEL, SEED

if TYPE_CHECKING:
    from sentiops.params import GateConfig

pipeline_app = typer.Typer(
    no_args_is_help=True, help="The KFP training pipeline: run locally, submit, compile."
)


def register_commands(app: typer.Typer) -> None:
    """Add `gate` and the `pipeline` sub-app to the main `sentiops` app."""
    app.command("gate")(gate)
    app.add_typer(pipeline_app, name="pipeline")


# ---------------------------------------------------------------- options shared by commands
Data = Annotated[
    list[str] | None,
    typer.Option(
        "--data",
        help="CSV/JSONL/Parquet path, s3:// URI or built-in name (vader-tweets, "
        "vader-movies); repeat to concatenate",
    ),
]
MinDelta = Annotated[
    float | None, typer.Option(help="smallest macro-F1 gain that counts (default 0.0)")
]
Confidence = Annotated[
    float | None, typer.Option(help="one-sided bootstrap confidence (default 0.95)")
]
Resamples = Annotated[
    int | None, typer.Option(help="paired bootstrap resamples (>= 1000) (default 2000)")
]
RecallDrop = Annotated[
    float | None, typer.Option(help="largest allowed per-class recall drop (default 0.05)")
]
Latency = Annotated[
    float | None, typer.Option(help="p95 single-text latency budget in ms (default 1000)")
]
Size = Annotated[float | None, typer.Option(help="model size budget in MB (default 2000)")]
MinF1 = Annotated[
    float | None, typer.Option(help="macro-F1 the first champion needs (default 0.5)")
]
ModelType = Annotated[str | None, typer.Option(help="tfidf-logreg | transformer")]
BaseModel = Annotated[
    str | None,
    typer.Option(
        help="hub id, local dir, s3:// prefix, 'offline' (all-MiniLM-L6-v2 from PyPI) or "
        "'tiny-distilbert' (random, for tests)"
    ),
]
Hyper = Annotated[
    str | None,
    typer.Option(help='JSON object of TrainConfig fields, e.g. \'{"epochs": 1, "lr": 3e-3}\''),
]
Champion = Annotated[
    str | None,
    typer.Option(
        help="'' = the registry alias 'champion' (none on the first run), 'none', or a model "
        "directory / s3:// prefix"
    ),
]
Store = Annotated[
    str | None,
    typer.Option(
        help="s3://bucket or a local directory; models go to <store>/models/<name>/<version>/"
    ),
]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="any other pipeline parameter as KEY=VALUE (VALUE parsed as JSON if it can "
        "be); repeatable",
    ),
]
Image = Annotated[
    str | None,
    typer.Option(
        help="component image (default $SENTIOPS_COMPONENT_IMAGE or sentiops/components:<version>)"
    ),
]


GATE_OPTIONS = (
    "min_delta",
    "confidence",
    "n_resamples",
    "max_class_recall_drop",
    "max_p95_latency_ms",
    "max_model_size_mb",
    "min_macro_f1",
)


def _gate_config(params: dict[str, Any], **fixed: Any) -> GateConfig:
    """GateConfig from the gate options that were given (the rest keep their defaults); a bad
    value is a usage error naming the option."""
    from pydantic import ValidationError

    from sentiops.params import GateConfig

    chosen = {k: params[k] for k in GATE_OPTIONS if params.get(k) is not None}
    try:
        return GateConfig.model_validate(chosen | fixed)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors()
        )
        raise typer.BadParameter(problems) from None


def _pipeline_arguments(params: dict[str, Any]) -> dict[str, Any]:
    """Pipeline arguments from the options given (`ctx.params`); the rest keep the defaults."""
    args: dict[str, Any] = {
        "datasets": params.get("data") or None,
        "model_type": params.get("model_type"),
        "base_model": params.get("base_model"),
        "champion": params.get("champion"),
        "model_store": params.get("model_store"),
    }
    if params.get("hyperparameters"):
        try:
            args["hyperparameters"] = json.loads(params["hyperparameters"])
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--hyperparameters is not JSON: {exc}") from exc
    if any(params.get(k) is not None for k in GATE_OPTIONS):
        args["gate"] = _gate_config(params).model_dump()
    for item in params.get("sets") or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set {item!r}: use KEY=VALUE")
        try:
            args[key] = json.loads(raw)
        except json.JSONDecodeError:
            args[key] = raw
    return {k: v for k, v in args.items() if v is not None}


def print_decision(decision: dict[str, Any], title: str = "promotion gate") -> None:
    verdict = "[bold green]APPROVED[/]" if decision["approved"] else "[bold red]REJECTED[/]"
    ch, cp = decision["challenger"], decision.get("champion")
    table = Table(
        title=f"{title}: challenger {ch.get('model_type')} {ch.get('version')} vs "
        + (f"champion {cp.get('model_type')} {cp.get('version')}" if cp else "no champion")
    )
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for c in decision["checks"]:
        table.add_row(c["name"], "pass" if c["passed"] else "[red]FAIL[/]", c["message"])
    console.print(comparison_table(ch, cp, decision.get("dataset") or {}))
    console.print(table)
    console.print(f"{verdict}  delta macro-F1 {decision['delta_macro_f1']:+.4f}", highlight=False)


def comparison_table(ch: dict[str, Any], cp: dict[str, Any] | None, dataset: dict) -> Table:
    """Challenger and champion side by side on the same held-out test set."""
    table = Table(title=f"held-out test set: dataset {dataset.get('version')} n={dataset.get('n')}")
    table.add_column("metric")
    table.add_column(f"challenger ({ch.get('model_type')})", justify="right")
    table.add_column(f"champion ({cp.get('model_type')})" if cp else "champion", justify="right")

    def num(m: dict[str, Any] | None, key: str, fmt: str = ".4f") -> str:
        value = (m or {}).get(key)
        return "-" if value is None else format(value, fmt)

    table.add_row("macro-F1", num(ch, "macro_f1"), num(cp, "macro_f1"))
    table.add_row("accuracy", num(ch, "accuracy"), num(cp, "accuracy"))
    for label in sorted(set(ch.get("recall", {})) | set((cp or {}).get("recall", {}))):
        table.add_row(
            f"recall {label}", num(ch.get("recall"), label), num((cp or {}).get("recall"), label)
        )
    table.add_row(
        "p95 latency (ms)", num(ch, "p95_latency_ms", ".1f"), num(cp, "p95_latency_ms", ".1f")
    )
    table.add_row("size (MB)", num(ch, "size_mb", ".1f"), num(cp, "size_mb", ".1f"))
    return table


# ------------------------------------------------------------------------------ sentiops gate
@handled
def gate(
    ctx: typer.Context,
    challenger: Annotated[Path, typer.Option(help="challenger model directory")],
    data: Annotated[
        list[str],
        typer.Option(
            "--data", help="labelled held-out data (path, s3:// URI or built-in name); repeatable"
        ),
    ],
    output_json: Annotated[Path, typer.Option(help="decision record JSON to write")],
    champion: Annotated[
        Path | None, typer.Option(help="champion model directory; omit when there is none yet")
    ] = None,
    split: Annotated[
        str, typer.Option(help="all | test (the test split `train` used, rebuilt from --seed)")
    ] = "all",
    report_md: Annotated[Path | None, typer.Option(help="also write the Markdown record")] = None,
    min_delta: MinDelta = None,
    confidence: Confidence = None,
    n_resamples: Resamples = None,
    max_class_recall_drop: RecallDrop = None,
    max_p95_latency_ms: Latency = None,
    max_model_size_mb: Size = None,
    min_macro_f1: MinF1 = None,
    seed: Annotated[int, typer.Option(help="seed of the split and the bootstrap")] = SEED,
    text_column: str = "text",
    label_column: str = "label",
    registered_model: Annotated[
        str, typer.Option(help="MLflow registered model")
    ] = REGISTERED_MODEL,
    challenger_version: Annotated[
        str | None,
        typer.Option(
            help="the challenger's MLflow registry version: tag it with the decision and, if "
            "approved, push it to --store and make it the registry's candidate"
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="with --challenger-version: s3://bucket or a directory (default: the local "
            "store under $SENTIOPS_HOME)"
        ),
    ] = None,
) -> None:
    """Gate a challenger against the champion on the same labelled data (exit 0 either way)."""
    import tempfile

    from sentiops.config import get_settings
    from sentiops.data.prepare import labelled_split
    from sentiops.gate.promotion import NO_CHAMPION, gate_challenger, register
    from sentiops.params import DataConfig

    cfg = _gate_config(ctx.params, seed=seed)
    df, manifest = labelled_split(
        DataConfig(
            data=data,
            text_column=text_column,
            label_column=label_column,
            seed=seed,
            min_per_class=1,
        ),
        split,
    )
    with tempfile.TemporaryDirectory() as work:
        decision = gate_challenger(
            challenger,
            df,
            cfg,
            str(champion) if champion else NO_CHAMPION,
            Path(work),
            manifest.version,
            registered_model,
            challenger_version,
        )
    decision.write_json(output_json)
    if report_md:
        from sentiops.gate.report import decision_markdown

        report_md.write_text(decision_markdown(decision))
    print_decision(decision.to_dict())
    console.print(f"decision record: {output_json}")
    if challenger_version and decision.approved:
        pushed = register(
            challenger,
            decision,
            store or str(get_settings().local_store),
            registered_model=registered_model,
            registry_version=challenger_version,
        )
        console.print(f"candidate: v{challenger_version} at {pushed['uri']}", highlight=False)


# ----------------------------------------------------------------------- sentiops pipeline ...
@pipeline_app.command("run")
@handled
def pipeline_run(
    ctx: typer.Context,
    local: Annotated[
        bool, typer.Option("--local", help="run with kfp.local's SubprocessRunner (required)")
    ] = False,
    data: Data = None,
    model_type: ModelType = None,
    base_model: BaseModel = None,
    hyperparameters: Hyper = None,
    champion: Champion = None,
    model_store: Store = None,
    min_delta: MinDelta = None,
    confidence: Confidence = None,
    n_resamples: Resamples = None,
    max_class_recall_drop: RecallDrop = None,
    max_p95_latency_ms: Latency = None,
    max_model_size_mb: Size = None,
    min_macro_f1: MinF1 = None,
    sets: Sets = None,
    pipeline_root: Annotated[
        Path | None,
        typer.Option(help="where task artifacts go (default $SENTIOPS_HOME/pipeline-runs)"),
    ] = None,
    output_json: Annotated[Path | None, typer.Option(help="copy of the decision record")] = None,
    verbose: Annotated[bool, typer.Option(help="show every task's output")] = False,
    promote: Annotated[
        bool,
        typer.Option(help="make an approved candidate the champion right after the run (no "
                     "canary); --no-promote leaves it the candidate for a rollout"),
    ] = True,
) -> None:
    """Run the whole pipeline here: ingest -> validate -> split -> train -> evaluate -> gate
    -> register (if approved). MLflow and S3 settings come from the environment."""
    from sentiops.pipeline.run import local_arguments, run_local

    if not local:
        err.print(
            "[bold red]error:[/] pass --local, or use `sentiops pipeline submit --host "
            "URL` to run on a Kubeflow Pipelines cluster"
        )
        raise typer.Exit(2)
    args = local_arguments(**_pipeline_arguments(ctx.params))
    run = run_local(args, pipeline_root, verbose=verbose, promote=promote)
    _report_run(run, output_json)


def _report_run(run: Any, output_json: Path | None, title: str = "promotion gate") -> None:
    print_decision(run.decision, title)
    if run.storage_uri:
        console.print(f"pushed to the store as the candidate: {run.storage_uri}", highlight=False)
    if run.promoted:
        console.print(
            f"registry: v{run.promoted} promoted candidate -> champion (local run, no canary)",
            highlight=False,
        )
    console.print(
        f"artifacts: {run.run_dir}" + (f"  task logs: {run.log}" if run.log else ""),
        highlight=False,
    )
    if output_json:
        output_json.write_text(json.dumps(run.decision, indent=2))


@pipeline_app.command("demo")
@handled
def pipeline_demo(
    data: Data = None,
    base_model: Annotated[
        str, typer.Option(help="the transformer's base model")
    ] = BASE_MODEL_PIPELINE,
    hyperparameters: Annotated[
        str, typer.Option(help="the transformer's TrainConfig fields (JSON)")
    ] = ('{"epochs": 1, "max_length": 64, "batch_size": 32, "lr": 1e-4}'),
    output_json: Annotated[Path | None, typer.Option(help="the second decision record")] = None,
    verbose: bool = False,
) -> None:
    """Run the local pipeline twice: the TF-IDF baseline becomes champion, then a transformer
    challenges it and the gate decides."""
    from sentiops.pipeline.run import champion_challenger

    try:
        hyper = json.loads(hyperparameters)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--hyperparameters is not JSON: {exc}") from exc
    first, second = champion_challenger(
        data or [DATASET], base_model, hyper, verbose=verbose, progress=console.print
    )
    _report_run(first, None, "run 1: baseline")
    _report_run(second, output_json, "run 2: transformer vs champion")
    champion = second.storage_uri if second.promoted else first.storage_uri
    if champion:
        serve_round_trip(champion)


def serve_round_trip(model_uri: str, texts: list[str] | None = None) -> None:
    """Serve the champion on loopback (`python -m serving`, the image's command), print one
    v1 and one v2 round trip, stop the server."""
    import tempfile

    from sentiops.local.loop.config import ROUND_TRIP_TEXTS
    from sentiops.local.stack import Predictor, round_trip
    from sentiops.models.modeldir import read_manifest
    from sentiops.store.storage import local_model

    texts = texts or ROUND_TRIP_TEXTS
    model_dir = local_model(model_uri)
    version = str(read_manifest(model_dir)["version"])
    with tempfile.TemporaryDirectory(prefix="sentiops-serve-") as work:
        predictor = Predictor(model_dir, version, Path(work))
        console.print(f"serving the champion v{version} on {predictor.url} ...", highlight=False)
        try:
            predictor.start()
            answers = round_trip(predictor.url, texts)
        finally:
            predictor.stop()
    print_round_trip(answers, texts, version)
    console.print("server stopped")


def print_round_trip(answers: dict[str, Any], texts: list[str], version: str) -> None:
    """One v1 and one v2 answer for the same texts, side by side."""
    from rich.table import Table

    v2 = {o["name"]: o for o in answers["v2"]["outputs"]}
    table = Table(title=f"champion v{version} served: v1 :predict and v2 /infer (OIP)")
    for col in ("text", "v1 label", "v1 score", "v2 label", "v2 probabilities"):
        table.add_column(col)
    labels = answers["metadata"]["parameters"]["labels"]
    rows = zip(texts, answers["v1"]["predictions"], v2["label"]["data"],
               _rows(v2["probabilities"]["data"], len(labels)), strict=True)  # fmt: skip
    for text, p1, label2, probs in rows:
        shown = ", ".join(f"{k} {p:.2f}" for k, p in zip(labels, probs, strict=True))
        table.add_row(text, p1["label"], f"{p1['score']:.3f}", label2, shown)
    console.print(table)
    console.print(f"v2 response id {answers['v2']['id']!r}, model_version "
                  f"{answers['v2'].get('model_version')!r}", highlight=False)  # fmt: skip


def _rows(flat: list[float], width: int) -> list[list[float]]:
    return [flat[i : i + width] for i in range(0, len(flat), width)]


@pipeline_app.command("submit")
@handled
def pipeline_submit(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="KFP API/UI URL, e.g. http://localhost:8080")],
    experiment: Annotated[str, typer.Option(help="KFP experiment")] = "sentiops",
    run_name: Annotated[str | None, typer.Option(help="run (or recurring run) name")] = None,
    schedule: Annotated[
        str | None,
        typer.Option(
            help="cron expression (6 fields, seconds first: '0 0 3 * * *') for a recurring run"
        ),
    ] = None,
    package: Annotated[
        Path | None,
        typer.Option(help="compiled YAML to submit (default: compile now with --image)"),
    ] = None,
    image: Image = None,
    namespace: Annotated[str | None, typer.Option(help="KFP namespace (multi-user)")] = None,
    token: Annotated[
        str | None, typer.Option(envvar="KFP_TOKEN", help="bearer token (env KFP_TOKEN)")
    ] = None,
    data: Data = None,
    model_type: ModelType = None,
    base_model: BaseModel = None,
    hyperparameters: Hyper = None,
    champion: Champion = None,
    model_store: Store = None,
    min_delta: MinDelta = None,
    confidence: Confidence = None,
    n_resamples: Resamples = None,
    max_class_recall_drop: RecallDrop = None,
    max_p95_latency_ms: Latency = None,
    max_model_size_mb: Size = None,
    min_macro_f1: MinF1 = None,
    sets: Sets = None,
) -> None:
    """Submit the pipeline to Kubeflow Pipelines (credentials: Secret sentiops-s3)."""
    from sentiops.pipeline.run import submit

    args = _pipeline_arguments(ctx.params)
    result = submit(host, args, experiment, run_name, schedule, package, image, namespace, token)
    for key, value in result.items():
        console.print(f"{key}: {value}", highlight=False)


@pipeline_app.command("compile")
@handled
def pipeline_compile(
    output: Annotated[
        Path, typer.Option(help="YAML to write (`make pipeline` writes the packaged copy)")
    ] = Path("sentiops.yaml"),
    image: Image = None,
) -> None:
    """Compile the pipeline to YAML (what `make pipeline` does)."""
    from sentiops.pipeline.run import compile_pipeline

    path = compile_pipeline(output, image)
    console.print(f"wrote {path}", highlight=False)
