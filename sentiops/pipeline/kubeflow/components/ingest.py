"""ingest: dataset names / files / s3:// URIs -> one Parquet table (Dataset)."""

from kfp.dsl import Dataset, Output


def ingest(
    datasets: list[str],
    raw: Output[Dataset],
    text_column: str,
    label_column: str,
    s3_endpoint: str = "",
) -> None:
    """Read built-in datasets (vader-tweets, vader-movies), CSV/JSONL/Parquet files or s3://
    URIs and concatenate them into one table."""
    from pathlib import Path

    from sentiops.pipeline import stages

    settings = stages.endpoints(s3_endpoint)
    raw.metadata.update(
        stages.ingest(datasets, Path(raw.path), text_column, label_column, settings)
    )
