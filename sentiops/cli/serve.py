"""`sentiops serve`: the KServe predictor on this machine (the image's `python -m serving`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sentiops.config import MODEL_NAME


def register_commands(app: typer.Typer) -> None:
    from sentiops.cli.common import handle_errors

    app.command("serve")(handle_errors(serve))


def serve(
    model: Annotated[str, typer.Option(help="model directory or s3:// prefix")],
    http_port: Annotated[int, typer.Option(help="REST (v1 + v2) and /metrics")] = 8080,
    grpc_port: Annotated[int, typer.Option(help="v2 gRPC")] = 8081,
    name: Annotated[str, typer.Option(help="model name in the URLs")] = MODEL_NAME,
    logger_url: Annotated[
        str, typer.Option(help="post requests/responses as CloudEvents here (drift sidecar)")
    ] = "",
    logger_mode: Annotated[str, typer.Option(help="all | request | response")] = "all",
    max_batch_size: Annotated[int, typer.Option(help="most texts in one request")] = 256,
    batch_window_ms: Annotated[
        float, typer.Option(help="how long a forward pass waits for concurrent requests")
    ] = 5.0,
) -> None:
    """Serve a model with KServe's ModelServer: v1 + v2 REST, v2 gRPC, /metrics.

    The model is checked (and an s3:// model downloaded, checksums verified) before the
    server starts, so a broken model is an error here, not a server that never gets ready."""
    from sentiops.errors import ConfigError
    from sentiops.models.modeldir import read_manifest

    if logger_mode not in ("all", "request", "response"):
        raise ConfigError(f"--logger-mode {logger_mode!r}", "use all, request or response")
    from sentiops.store.storage import local_model

    model = str(local_model(model))
    manifest = read_manifest(Path(model))
    print(
        f"serving {manifest['model_type']} {manifest['version']} from {model} as {name!r}: "
        f"http://127.0.0.1:{http_port}/v2/models/{name}, gRPC :{grpc_port}",
        flush=True,
    )
    args = [
        sys.executable,
        "-m",
        "serving",
        f"--model_name={name}",
        f"--model_dir={model}",
        f"--http_port={http_port}",
        f"--grpc_port={grpc_port}",
        f"--max_batch_size={max_batch_size}",
        f"--batch_window_ms={batch_window_ms}",
    ]
    if logger_url:
        args += [f"--logger_url={logger_url}", f"--logger_mode={logger_mode}"]
    os.execv(sys.executable, args)  # the same process as the image runs; Ctrl-C stops it
