"""`sentiops gate`: a challenger against the champion on the same labelled data.

Contract (options may be added, these stay):
  sentiops gate --champion DIR --challenger DIR --data PATH --output-json FILE
      writes {"approved": bool, "delta_macro_f1": float, "reasons": [str, ...], ...}; exit 0
      whether or not the challenger is approved (non-zero only for errors).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from sentiops.cli import options
from sentiops.cli.common import console, handled
from sentiops.cli.tables import print_decision
from sentiops.config import REGISTERED_MODEL, SEED, get_settings
from sentiops.gate.report import decision_markdown
from sentiops.params import DataConfig


def register_commands(app: typer.Typer) -> None:
    """`gate` on the main `sentiops` app."""
    app.command("gate")(gate)


@handled
@options.with_options(
    options.field_option(DataConfig, "text_column"),
    options.field_option(DataConfig, "label_column"),
    *options.gate_options(),
)
def gate(
    *,
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
    seed: Annotated[int, typer.Option(help="seed of the split and the bootstrap")] = SEED,
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
    **fields: Any,
) -> None:
    """Gate a challenger against the champion on the same labelled data (exit 0 either way).

    The thresholds are the fields of sentiops.params.GateConfig (the pipeline's `gate`)."""
    from sentiops.data.prepare import labelled_split  # lazy: pulls sklearn
    from sentiops.gate.promotion import NO_CHAMPION, gate_challenger  # lazy: pulls pandas

    cfg = options.gate_config(fields, seed=seed)
    columns = {k: fields[k] for k in ("text_column", "label_column")}
    df, manifest = labelled_split(
        DataConfig(data=data, seed=seed, min_per_class=1, **columns), split
    )
    with tempfile.TemporaryDirectory() as work:
        decision = gate_challenger(
            challenger,
            df,
            cfg,
            str(champion) if champion else NO_CHAMPION,
            Path(work),
            manifest.version,
            registered_model=registered_model,
            challenger_registry_version=challenger_version,
        )
    decision.write_json(output_json)
    if report_md:
        report_md.write_text(decision_markdown(decision))
    print_decision(decision.to_dict())
    console.print(f"decision record: {output_json}")
    if challenger_version and decision.approved:
        _make_candidate(challenger, decision, store, registered_model, challenger_version)


def _make_candidate(
    challenger: Path, decision: Any, store: str | None, registered_model: str, version: str
) -> None:
    """Push an approved challenger to the store and make it the registry's candidate."""
    from sentiops.gate.promotion import register  # lazy: pulls pandas

    pushed = register(
        challenger,
        decision,
        store or str(get_settings().local_store),
        registered_model=registered_model,
        registry_version=version,
    )
    console.print(f"candidate: v{version} at {pushed['uri']}", highlight=False)
