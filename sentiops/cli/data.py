"""`sentiops data fetch` and `sentiops validate`: the built-in datasets and checking data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sentiops.cli import options
from sentiops.cli.common import console, handled
from sentiops.config import get_settings
from sentiops.params import DataConfig

data_app = typer.Typer(no_args_is_help=True, help="Built-in datasets.")


def register_commands(app: typer.Typer) -> None:
    """The `data` sub-app and `validate` on the main `sentiops` app."""
    app.add_typer(data_app, name="data")
    app.command()(validate)


@data_app.command("fetch")
@handled
def data_fetch(
    name: Annotated[list[str] | None, typer.Option(help="dataset(s); default all")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="also write <name>.csv here")] = None,
) -> None:
    """Download the VADER ground truth (Hutto & Gilbert, ICWSM 2014) and snapshot it."""
    from sentiops.data.datasets import BUILTIN, fetch_builtin, snapshot  # lazy: pulls pandas

    s = get_settings()
    table = Table(title="built-in datasets")
    for col in ("name", "rows", "negative", "neutral", "positive", "version"):
        table.add_column(col)
    for n in name or sorted(BUILTIN):
        df = fetch_builtin(n, s)
        m = snapshot(df, n, [f"{n} (vaderSentiment==3.3.2 sdist)"], s.datasets_dir)
        c = m.label_counts
        table.add_row(
            n,
            str(m.rows),
            str(c.get("negative", 0)),
            str(c.get("neutral", 0)),
            str(c.get("positive", 0)),
            m.version,
        )
        if output_dir:
            output_dir.mkdir(parents=True, exist_ok=True)
            df[["text", "label", "score"]].to_csv(output_dir / f"{n}.csv", index=False)
    console.print(table)


@handled
@options.with_options(
    *(
        options.field_option(DataConfig, name, required=name == "data")
        for name in DataConfig.model_fields
    ),
    own_last=True,
)
def validate(
    *,
    report_dir: Annotated[Path, typer.Option(help="where validation.json/.md go")] = Path("."),
    **fields: Any,
) -> None:
    """Validate and split data; exit 3 with a report naming the rows when it is unusable."""
    from sentiops.data.prepare import prepare  # lazy: pulls sklearn

    prep = prepare(DataConfig(**options.config_values(DataConfig, fields)), report_dir)
    console.print(prep.report.to_markdown())
    console.print(
        f"dataset version {prep.manifest.version}; splits "
        + ", ".join(f"{k}={len(v)}" for k, v in prep.splits.items())
    )
