"""`sentiops batch`: score files of any size with a model, resumably, with a progress bar.

Contract (options may be added, these stay):
  sentiops batch --model DIR|s3://... --input PATH|s3://prefix --output PATH|s3://prefix
Rerun the same command after a crash: finished shards are skipped. Errors print what was wrong
and how to fix it, and exit non-zero (see sentiops.errors).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from sentiops.batch.plan import BATCH_SIZE, FORMATS, KEEP_ALL, SHARD_ROWS
from sentiops.cli.common import console, err, handled

if TYPE_CHECKING:
    from sentiops.batch.job import JobEvent, Result


def register_commands(app: typer.Typer) -> None:
    """`batch` on the main `sentiops` app."""
    app.command("batch")(batch)


@handled
def batch(
    *,
    model: Annotated[
        str, typer.Option(help="model directory or the s3:// prefix it was pushed to")
    ],
    input_: Annotated[
        str,
        typer.Option(
            "--input",
            help="a CSV / TSV / JSONL / Parquet file (.gz for CSV and "
            "JSONL), or a directory or s3:// prefix of them",
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            help="directory or s3:// prefix to write (Parquet shards, manifest.json, "
            "summary.json); the same output resumes"
        ),
    ],
    text_column: Annotated[str, typer.Option(help="column holding the text")] = "text",
    keep: Annotated[
        list[str] | None,
        typer.Option(
            help="input column to carry to the output (repeatable); 'all' (default) or 'none'"
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help=f"input format: auto (by name), {', '.join(FORMATS)}"),
    ] = "auto",
    batch_size: Annotated[int, typer.Option(help="texts per forward pass")] = BATCH_SIZE,
    shard_rows: Annotated[
        int, typer.Option(help="rows per shard (the unit that is written, and resumed)")
    ] = SHARD_ROWS,
    max_chars: Annotated[
        int | None,
        typer.Option(
            help="longer texts are not scored (status too_long); default: the "
            "predictor's limit, 5000"
        ),
    ] = None,
    restart: Annotated[
        bool, typer.Option(help="discard what --output holds and score everything again")
    ] = False,
) -> None:
    """Score a file (or a directory / prefix of files) of any size in bounded memory, shard by
    shard; rerun the same command to resume (finished shards are skipped). Every output row
    carries its label, one probability per class, the model version and its status."""
    from sentiops.batch.job import run  # lazy: CLI startup

    with _Bar() as bar:
        result = run(
            model,
            input_,
            output,
            text_column=text_column,
            keep=keep or [KEEP_ALL],
            fmt=fmt,
            shard_rows=shard_rows,
            batch_size=batch_size,
            max_chars=max_chars,
            restart=restart,
            on_event=bar.event,
        )
    print_summary(result)


class _Bar:
    """A rich progress bar over the job's rows (texts/s, ETA) on a terminal; elsewhere (logs,
    kubectl) one line per finished shard."""

    def __init__(self) -> None:
        from rich.progress import (  # lazy: CLI startup
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.live = err.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.fields[stage]}[/] {task.fields[shards]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not self.live,
        )
        self.task: Any = None
        self.total = self.finished = 0
        self.scored = 0
        self.started = 0.0

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def event(self, ev: JobEvent) -> None:
        if ev.kind == "planned" and ev.plan is not None:
            self.total = len(ev.plan.shards)
            self.started = time.perf_counter()
            self.task = self.progress.add_task(
                "scoring",
                total=ev.plan.rows,
                completed=ev.rows,
                shards=self._shards(),
                speed="",
                stage="loading the model",
            )
            if not self.live:
                err.print(
                    f"{ev.plan.rows:,} rows in {self.total} shard(s) of at most "
                    f"{ev.plan.shard_rows:,} rows; model {ev.plan.version}",
                    highlight=False,
                )
        elif ev.kind == "loaded":
            self.started = time.perf_counter()  # texts/s from here: the scoring alone
            self.progress.update(self.task, stage="scoring")
        elif ev.kind == "rows":
            self.scored += ev.rows
            secs = time.perf_counter() - self.started
            speed = f"{self.scored / secs:,.0f} texts/s" if secs > 0 else ""
            self.progress.update(self.task, advance=ev.rows, speed=speed)
        elif ev.kind == "shard" and ev.record is not None:
            self.finished += 1
            self.progress.update(self.task, shards=self._shards())
            if not self.live and not ev.skipped:
                r = ev.record
                err.print(
                    f"{r['name']}: {r['rows']:,} rows of {r['file']} in {r['seconds']:.1f}"
                    f" s ({r['texts_per_sec']:,.0f} texts/s)  [{self.finished}/"
                    f"{self.total}]",
                    highlight=False,
                )

    def _shards(self) -> str:
        return f"shard {self.finished}/{self.total}"


def print_summary(result: Result) -> None:
    s, plan = result.summary, result.plan
    table = Table(title=f"batch: {plan.model.get('model_type')} {plan.version} -> {s['output']}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row(
        "shards scored now / finished before / all",
        f"{len(result.scored)} / {len(result.skipped)} / {s['shards']}",
    )
    table.add_row("rows", f"{s['rows']:,}")
    for status, n in s["status"].items():
        if n or status == "ok":
            table.add_row(f"  {status}", f"{n:,}")
    for label, n in s["labels"].items():
        table.add_row(f"  label {label}", f"{n:,}")
    if s["malformed"]:
        table.add_row("malformed CSV rows (skipped)", f"{s['malformed']:,}")
    if result.scored:
        table.add_row("rows scored now", f"{result.rows_scored:,}")
        table.add_row("model load (s)", f"{result.load_seconds:.1f}")
        table.add_row("scoring (s)", f"{result.seconds:.1f}")
        table.add_row("texts/s", f"{result.texts_per_sec:,.0f}")
    console.print(table)
    console.print(
        f"output: {s['data']} (Parquet; summary.json and manifest.json beside it)",
        highlight=False,
        soft_wrap=True,
    )
    if s["malformed"]:
        examples = [e for f in s["files"] for e in f["malformed_examples"]][:3]
        err.print(
            f"[yellow]warning:[/] {s['malformed']} CSV row(s) with the wrong number of "
            f"fields were skipped, e.g. {'; '.join(examples)}",
            highlight=False,
            soft_wrap=True,
        )
