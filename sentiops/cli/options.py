"""Options more than one command module takes: the data to read, and the gate's thresholds
(`sentiops gate`, `sentiops pipeline run / submit`), with `gate_config` that turns the given
ones into a `GateConfig`. Imports nothing of the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from sentiops.params import GateConfig

DataOpt = Annotated[
    list[str],
    typer.Option(
        "--data",
        help="CSV/JSONL/Parquet path, s3:// URI or built-in name "
        "(vader-tweets, vader-movies); repeat to concatenate",
    ),
]
TextCol = Annotated[str, typer.Option(help="column holding the text")]
LabelCol = Annotated[str, typer.Option(help="column holding the label")]
Seed = Annotated[int, typer.Option(help="seed for splitting and training")]
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

GATE_OPTIONS = (
    "min_delta",
    "confidence",
    "n_resamples",
    "max_class_recall_drop",
    "max_p95_latency_ms",
    "max_model_size_mb",
    "min_macro_f1",
)


def gate_config(params: dict[str, Any], **fixed: Any) -> GateConfig:
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
