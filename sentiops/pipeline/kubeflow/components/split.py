"""split: stratified train / validation / test tables (seeded)."""

from kfp.dsl import Dataset, Input, Output


def split(
    clean: Input[Dataset],
    train_data: Output[Dataset],
    validation_data: Output[Dataset],
    test_data: Output[Dataset],
    seed: int,
    val_frac: float,
    test_frac: float,
) -> None:
    """The same rows and seed always give the same split."""
    from pathlib import Path

    from sentiops.pipeline import stages

    outs = {"train": train_data, "validation": validation_data, "test": test_data}
    info = stages.split(
        Path(clean.path), {k: Path(v.path) for k, v in outs.items()}, seed, val_frac, test_frac
    )
    for name, artifact in outs.items():
        artifact.metadata.update(
            {
                "split": name,
                "rows": info["rows"][name],
                "dataset_version": clean.metadata.get("dataset_version"),
                "overlap_with_other_splits": info["overlap"],
            }
        )
