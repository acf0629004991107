"""Deterministic stratified train / validation / test split."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from sentiops.data import LABEL
from sentiops.errors import DataError

SPLITS = ("train", "validation", "test")


def split(
    df: pd.DataFrame, seed: int = 42, val_frac: float = 0.1, test_frac: float = 0.2
) -> dict[str, pd.DataFrame]:
    """Stratified by label; the same rows and seed always give the same split."""
    if not 0 < val_frac < 1 or not 0 < test_frac < 1 or val_frac + test_frac >= 1:
        raise DataError(
            f"bad split fractions val={val_frac} test={test_frac}",
            "both must be in (0, 1) and sum to less than 1",
        )
    try:
        rest, test = train_test_split(
            df, test_size=test_frac, random_state=seed, stratify=df[LABEL]
        )
        train, val = train_test_split(
            rest, test_size=val_frac / (1 - test_frac), random_state=seed, stratify=rest[LABEL]
        )
    except ValueError as exc:
        raise DataError(
            f"cannot split {len(df)} rows stratified by label: {exc}",
            "add examples to the smallest class or lower the split fractions",
        ) from exc
    return {
        name: part.reset_index(drop=True)
        for name, part in zip(SPLITS, (train, val, test), strict=True)
    }
