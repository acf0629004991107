"""`sentiops` command line: a thin Typer adapter over the core library.

Contract other tools rely on (options may be added, these stay):
  sentiops train --data PATH [--data PATH ...] --model-type tfidf-logreg|transformer --output DIR
                 [--base-model X]
  sentiops evaluate --model DIR --data PATH --output-json FILE
Errors print what was wrong and how to fix it, and exit non-zero (see sentiops.errors).

Each command group is one module of `sentiops.cli` with `register_commands(app)`; they are
registered here in the order `sentiops --help` lists them. Help texts are docstrings wrapped for
the source; `unwrap_help` makes each paragraph one line for every command, so that the terminal
wraps it (Typer's rich help keeps a docstring's single line breaks where they are).
"""

from __future__ import annotations

import importlib
import inspect

import pydantic
import typer

#: The command groups (modules of sentiops.cli), in the order `sentiops --help` lists them.
GROUPS = (
    "data",
    "model",
    "batch",
    "gate",
    "pipeline",
    "serve",
    "feedback",
    "labels",
    "local",
    "rollout",
    "drift",
    "status",
)
#: The drift environment (.venv-drift and the drift image: Alibi Detect 0.11 brings pydantic
#: 1.10, while the run parameters the other groups are made of need pydantic 2) has only these.
DRIFT_ENVIRONMENT_GROUPS = ("drift",)
IN_DRIFT_ENVIRONMENT = not pydantic.VERSION.startswith("2")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="SentiOps: train, evaluate, gate and serve sentiment models.\n\n"
    "The main job is `make run`: `sentiops loop`, the whole closed loop on this machine (train, "
    "gate, serve, canary, drift, labels, retrain) with real servers on loopback."
    + (
        "\n\nThis is the drift environment: only `sentiops drift` is here; every other command "
        "is in the main environment (.venv/bin/sentiops)."
        if IN_DRIFT_ENVIRONMENT
        else ""
    ),
)

for name in DRIFT_ENVIRONMENT_GROUPS if IN_DRIFT_ENVIRONMENT else GROUPS:
    importlib.import_module(f"sentiops.cli.{name}").register_commands(app)


def unwrap_help(text: str) -> str:
    """`text` (a docstring or a help string) with each paragraph on one line; a paragraph that
    starts with \\b (Click's "keep my line breaks") is left as it is."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def _unwrap_commands(group: typer.Typer) -> None:
    """Every help text of `group`, its commands and its sub-groups unwrapped (unwrap_help)."""
    if isinstance(group.info.help, str):
        group.info.help = unwrap_help(group.info.help)
    for command in group.registered_commands:
        text = command.help or inspect.getdoc(command.callback)
        if text:
            command.help = unwrap_help(text)
    for sub in group.registered_groups:
        if isinstance(sub.help, str):
            sub.help = unwrap_help(sub.help)
        if sub.typer_instance is not None:
            _unwrap_commands(sub.typer_instance)


_unwrap_commands(app)

if __name__ == "__main__":  # pragma: no cover
    app()
