"""`sentiops loop` (`make run`: the whole closed loop on this machine) and `sentiops up`
(`make up`: the local stack until Ctrl-C)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sentiops.cli.common import console, handle_errors
from sentiops.cli.tables import print_decision, print_round_trip


def register_commands(app: typer.Typer) -> None:
    app.command("loop")(handle_errors(loop))
    app.command("up")(handle_errors(up))


def up(
    rate: Annotated[float, typer.Option(help="tweets replayed per second")] = 5.0,
    console_port: Annotated[int, typer.Option(help="the web console's port")] = 8501,
    mlflow_port: Annotated[int, typer.Option(help="MLflow UI's port")] = 5000,
) -> None:
    """The local stack until Ctrl-C (`make up`): the champion served with its drift sidecar,
    Prometheus, MLflow's UI and the web console."""
    from sentiops.local.up import up as run_up  # lazy: CLI startup

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run_up(
        rate=rate,
        console_port=console_port,
        mlflow_port=mlflow_port,
        progress=lambda m: console.print(m, highlight=False),
    )


def loop(
    *,
    quick: Annotated[
        bool, typer.Option(help="the short variant (TF-IDF models, small steps)")
    ] = False,
    epochs: Annotated[int | None, typer.Option(help="transformer epochs (default 1)")] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="seed of every run's split and training, and of the traffic drawn "
            "from the datasets (default 42)"
        ),
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="logs of every server (default $SENTIOPS_HOME/loop)")
    ] = None,
) -> None:
    """The main job (`make run`): train -> gate -> serve -> canary -> drift -> labels -> retrain
    -> gate -> canary, with real servers on loopback (kfp.local, KServe's ModelServer, the drift
    sidecar, Prometheus, MLflow on sqlite), printed as a story; every server is stopped at the
    end."""
    from sentiops.local.loop.config import LoopConfig  # lazy: CLI startup
    from sentiops.local.loop.run import run_loop  # lazy: CLI startup

    cfg = LoopConfig.quick() if quick else LoopConfig()
    if epochs is not None:
        cfg.hyperparameters = {**cfg.hyperparameters, "epochs": epochs}
    if seed is not None:
        cfg.seed = seed
    # a TERM (CI's timeout, `kill`) unwinds like Ctrl-C: every server is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    start = time.monotonic()
    story = run_loop(cfg, workdir, progress=lambda m: console.print(m, highlight=False), show=_show)
    console.print(_story_table(story, time.monotonic() - start))


def _show(kind: str, data: Any) -> None:
    """What the loop shows as it goes: gate decisions, round trips, rollouts, accuracy."""
    if kind == "decision":
        decision, title = data
        print_decision(decision, title)
    elif kind == "round_trip":
        from sentiops.local.loop.config import ROUND_TRIP_TEXTS  # lazy: CLI startup

        answers, version = data
        print_round_trip(answers, ROUND_TRIP_TEXTS, version)
    elif kind == "rollout":
        console.print(data.to_markdown(), highlight=False)
    elif kind == "accuracy":
        console.print(_accuracy_table(*data))
    elif kind == "verdict":
        console.print(data, highlight=False)


def _accuracy_table(rows: list[dict[str, Any]], title: str) -> Any:
    """Live accuracy per model version and domain (the labelled random sample)."""
    table = Table(title=title)
    for col in (
        "model version",
        "domain",
        "labels (random sample)",
        "accuracy",
        "95 % interval",
        "macro-F1",
    ):
        table.add_column(col, justify="left" if col in ("model version", "domain") else "right")
    for r in rows:
        table.add_row(
            r["model_version"],
            r["domain"],
            str(r["labels"]),
            f"{r['accuracy']:.3f}",
            "{:.3f}-{:.3f}".format(*r["accuracy_95"]),
            f"{r['macro_f1']:.3f}",
        )
    return table


def _story_table(story: dict[str, Any], seconds: float) -> Any:
    """The loop's chapters, one line each: how long it took and what happened."""
    table = Table(title=f"the loop in {seconds:.0f}s")
    table.add_column("chapter")
    table.add_column("s", justify="right")
    table.add_column("what happened")
    for ch in story["chapters"]:
        summary = {
            k: v
            for k, v in ch["facts"].items()
            if k not in ("live_accuracy", "gate", "baseline", "challenger", "datasets")
        }
        table.add_row(
            ch["title"],
            f"{ch['seconds']:.0f}",
            ", ".join(f"{k}={v}" for k, v in summary.items())[:300],
        )
    return table
