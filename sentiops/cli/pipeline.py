"""`sentiops pipeline {run,demo,submit,compile}`: the KFP training pipeline for people.

Contract (options may be added, these stay):
  sentiops pipeline run --local [...]          kfp.local SubprocessRunner, this interpreter
  sentiops pipeline submit --host URL [...]    kfp.Client; --schedule CRON for a recurring run
  sentiops pipeline compile [--output FILE]    the pipeline as KFP YAML (default ./sentiops.yaml)
                           [--pipeline batch]  the batch scoring pipeline instead
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from sentiops.cli import options
from sentiops.cli.common import console, err, handled
from sentiops.cli.tables import print_decision, print_round_trip
from sentiops.config import BASE_MODEL_PIPELINE, DATASET
from sentiops.models.modeldir import read_manifest
from sentiops.params import TrainConfig

pipeline_app = typer.Typer(
    no_args_is_help=True, help="The KFP training pipeline: run locally, submit, compile."
)


def register_commands(app: typer.Typer) -> None:
    """The `pipeline` sub-app on the main `sentiops` app."""
    app.add_typer(pipeline_app, name="pipeline")


Image = Annotated[
    str | None,
    typer.Option(
        help="component image (default $SENTIOPS_COMPONENT_IMAGE or sentiops/components:<version>)"
    ),
]

#: What `pipeline run` and `pipeline submit` set of the pipeline's parameters: empty ones keep
#: the pipeline's defaults (sentiops.pipeline.kubeflow.training), the gate options too.
PIPELINE_OPTIONS = (
    options.field_option(TrainConfig, "data", default=None),
    options.field_option(TrainConfig, "model_type", default=None, help="(default: the pipeline's)"),
    options.field_option(TrainConfig, "base_model", default=None, help="(default: the pipeline's)"),
    options.parameter(
        "hyperparameters",
        str | None,
        help='JSON object of TrainConfig fields, e.g. \'{"epochs": 1, "lr": 3e-3}\'',
    ),
    options.parameter(
        "champion",
        str | None,
        help="'' = the registry alias 'champion' (none on the first run), 'none', or a model "
        "directory / s3:// prefix",
    ),
    options.parameter(
        "model_store",
        str | None,
        help="s3://bucket or a local directory; models go to <store>/models/<name>/<version>/",
    ),
    *options.gate_options(),
    options.parameter(
        "sets",
        list[str] | None,
        "--set",
        help="any other pipeline parameter as KEY=VALUE (VALUE parsed as JSON if it can be); "
        "repeatable",
    ),
)


def _pipeline_arguments(ctx: typer.Context, params: dict[str, Any]) -> dict[str, Any]:
    """Pipeline arguments from the PIPELINE_OPTIONS given; the rest keep the defaults."""
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
    thresholds = {k: params[k] for k in options.GATE_FIELDS if options.explicit(ctx, k)}
    if thresholds:
        args["gate"] = options.gate_config(thresholds).model_dump()
    for item in params.get("sets") or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set {item!r}: use KEY=VALUE")
        try:
            args[key] = json.loads(raw)
        except json.JSONDecodeError:
            args[key] = raw
    return {k: v for k, v in args.items() if v is not None}


@pipeline_app.command("run")
@handled
@options.with_options(*PIPELINE_OPTIONS)
def pipeline_run(
    *,
    ctx: typer.Context,
    local: Annotated[
        bool, typer.Option("--local", help="run with kfp.local's SubprocessRunner (required)")
    ] = False,
    pipeline_root: Annotated[
        Path | None,
        typer.Option(help="where task artifacts go (default $SENTIOPS_HOME/pipeline-runs)"),
    ] = None,
    output_json: Annotated[Path | None, typer.Option(help="copy of the decision record")] = None,
    verbose: Annotated[bool, typer.Option(help="show every task's output")] = False,
    promote: Annotated[
        bool,
        typer.Option(
            help="make an approved candidate the champion right after the run (no "
            "canary); --no-promote leaves it the candidate for a rollout"
        ),
    ] = True,
    **given: Any,
) -> None:
    """Run the whole pipeline here: ingest -> validate -> split -> train -> evaluate -> gate
    -> register (if approved). MLflow and S3 settings come from the environment."""
    from sentiops.pipeline.run import local_arguments, run_local  # lazy: CLI startup

    if not local:
        err.print(
            "[bold red]error:[/] pass --local, or use `sentiops pipeline submit --host "
            "URL` to run on a Kubeflow Pipelines cluster"
        )
        raise typer.Exit(2)
    args = local_arguments(**_pipeline_arguments(ctx, given))
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
    *,
    data: Annotated[
        list[str] | None, typer.Option(help=TrainConfig.model_fields["data"].description)
    ] = None,
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
    from sentiops.pipeline.run import champion_challenger  # lazy: CLI startup

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
    from sentiops.local.loop.config import ROUND_TRIP_TEXTS  # lazy: CLI startup
    from sentiops.local.stack import Predictor, round_trip  # lazy: CLI startup
    from sentiops.store.storage import local_model  # lazy: pulls minio

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


@pipeline_app.command("submit")
@handled
@options.with_options(*PIPELINE_OPTIONS)
def pipeline_submit(
    *,
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
    **given: Any,
) -> None:
    """Submit the pipeline to Kubeflow Pipelines (credentials: Secret sentiops-s3)."""
    from sentiops.pipeline.run import submit  # lazy: CLI startup

    args = _pipeline_arguments(ctx, given)
    result = submit(
        host,
        args,
        experiment=experiment,
        run_name=run_name,
        schedule=schedule,
        package=package,
        image=image,
        namespace=namespace,
        token=token,
    )
    for key, value in result.items():
        console.print(f"{key}: {value}", highlight=False)


@pipeline_app.command("compile")
@handled
def pipeline_compile(
    output: Annotated[
        Path, typer.Option(help="YAML to write (`make pipeline` writes the packaged copy)")
    ] = Path("sentiops.yaml"),
    image: Image = None,
    pipeline: Annotated[
        str, typer.Option(help="training (default) or batch (the batch scoring pipeline)")
    ] = "training",
) -> None:
    """Compile the pipeline to YAML (what `make pipeline` does)."""
    if pipeline == "batch":
        from sentiops.pipeline.kubeflow.batch import (
            compile_pipeline as compile_batch,  # lazy: pulls kfp
        )

        path = compile_batch(output, image)
    elif pipeline == "training":
        from sentiops.pipeline.run import compile_pipeline  # lazy: CLI startup

        path = compile_pipeline(output, image)
    else:
        raise typer.BadParameter(f"--pipeline {pipeline!r}: use training or batch")
    console.print(f"wrote {path}", highlight=False)
