"""Labelled data: what every stage that learns or measures reads.

    datasets    built-in VADER datasets, user tables (CSV / JSONL / Parquet, local or S3),
                write-once snapshots whose content hash is the dataset version; the column
                names and the label set
    validate    checks before training (exit 3 naming rows), JSON + Markdown report
    split       the deterministic train / validation / test split that adding data never
                disturbs
    prepare     one run's data from its `DataConfig`: load -> validate -> snapshot -> split

The package imports nothing itself: import the module you need (docs/architecture.md).
"""
