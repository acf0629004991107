"""`sentiops` command line: a thin Typer adapter over the core library.

Contract other tools rely on (options may be added, these stay):
  sentiops train --data PATH [--data PATH ...] --model-type tfidf-logreg|transformer --output DIR
                 [--base-model X]
  sentiops evaluate --model DIR --data PATH --output-json FILE
Errors print what was wrong and how to fix it, and exit non-zero (see sentiops.errors).

Each command group is one module of `sentiops.cli` with `register_commands(app)`; they are
registered here in the order `sentiops --help` lists them.
"""

from __future__ import annotations

import typer

from sentiops.cli import (
    batch,
    data,
    drift,
    feedback,
    gate,
    labels,
    local,
    model,
    pipeline,
    rollout,
    serve,
    status,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="SentiOps: train, evaluate, gate and serve sentiment models.",
)

for group in (
    data,
    model,
    batch,
    gate,
    pipeline,
    serve,
    feedback,
    labels,
    local,
    rollout,
    drift,
    status,
):
    group.register_commands(app)

if __name__ == "__main__":  # pragma: no cover
    app()
