"""validate: check and clean the table; Markdown report, row counts, dataset version."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Output


def validate(
    raw: Input[Dataset],
    clean: Output[Dataset],
    report: Output[Markdown],
    stats: Output[Metrics],
    min_per_class: int,
    drop_invalid: bool,
) -> None:
    """Fails the run (naming the rows) when training would be meaningless."""
    import tempfile
    from pathlib import Path

    from sentiops.pipeline import stages

    with tempfile.TemporaryDirectory() as tmp:
        try:
            result, version = stages.validate(
                Path(raw.path), Path(clean.path), Path(tmp), min_per_class, drop_invalid
            )
        finally:
            md = Path(tmp) / "validation.md"
            if md.exists():
                print(md.read_text())
                Path(report.path).write_text(md.read_text())
    stats.log_metric("rows_in", result.rows_in)
    stats.log_metric("rows_out", result.rows_out)
    stats.log_metric("warnings", len(result.findings))
    clean.metadata.update(
        {"dataset_version": version, "rows": result.rows_out, "label_counts": result.label_counts}
    )
