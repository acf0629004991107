"""Deterministic train / validation / test split that adding data never disturbs.

The rows of each original source (the first data source, and every built-in dataset) are split
stratified by label with the seed, each exactly as it would be on its own. Rows of any other
source (labels collected from live traffic, added for retraining) go to a split by a hash of
their text: the same text always lands in the same split, whatever else is added. So a
retraining run's test set holds the original test rows (none of which any earlier model trained
on) plus a held-out share of the new labels, and a text never moves from one split to another
between runs. Only labels of the random evaluation sample (`sample` = random, see
`sentiops.feedback`) may be test rows: labels chosen for training (the most uncertain texts)
are no sample of the traffic, so their test share goes to training instead, and the gate's
live test share estimates live accuracy.
"""

from __future__ import annotations

import hashlib

import pandas as pd
from sklearn.model_selection import train_test_split

from sentiops.data.datasets import BUILTIN, LABEL, SAMPLE, SOURCE, TEXT
from sentiops.data.validate import normalize_text
from sentiops.errors import DataError

SPLITS = ("train", "validation", "test")


def split(
    df: pd.DataFrame, seed: int = 42, val_frac: float = 0.1, test_frac: float = 0.2
) -> dict[str, pd.DataFrame]:
    """Each original source (the first one, and every built-in dataset) stratified by label
    with `seed` on its own; the others by text hash."""
    if not 0 < val_frac < 1 or not 0 < test_frac < 1 or val_frac + test_frac >= 1:
        raise DataError(
            f"bad split fractions val={val_frac} test={test_frac}",
            "both must be in (0, 1) and sum to less than 1",
        )
    if SOURCE in df.columns and len(df) and df[SOURCE].nunique() > 1:
        original = original_rows(df)
        parts = [
            _stratified(df[df[SOURCE] == src], seed, val_frac, test_frac)
            for src in dict.fromkeys(df.loc[original, SOURCE])
        ]
        parts.append(_by_hash(df[~original], val_frac, test_frac))
        return {name: pd.concat([p[name] for p in parts], ignore_index=True) for name in SPLITS}
    return _stratified(df, seed, val_frac, test_frac)


ORIGINAL, ADDED = "original", "added"


def original_rows(df: pd.DataFrame) -> pd.Series:
    """Rows of an original source: the first source, or a built-in dataset (several built-in
    datasets are each split as they would be alone, so each one's test rows stay the same)."""
    return (df[SOURCE] == df[SOURCE].iloc[0]) | df[SOURCE].isin(list(BUILTIN))


def groups(df: pd.DataFrame) -> list[str] | None:
    """Each row's group for the gate: "original" (the original sources, whose rows `split`
    puts first in every part) or "added" (every other source, e.g. live labels); None when
    there is only one group."""
    if SOURCE not in df.columns or not len(df) or df[SOURCE].nunique() < 2:
        return None
    original = original_rows(df)
    if original.all():
        return None
    return [ORIGINAL if o else ADDED for o in original]


def _by_hash(df: pd.DataFrame, val_frac: float, test_frac: float) -> dict[str, pd.DataFrame]:
    def bucket(text: str) -> float:
        digest = hashlib.sha256(normalize_text(str(text)).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    u = df[TEXT].map(bucket)
    # a row that is not from the random evaluation sample never tests (a source without the
    # column is taken as a sample of its own, as before)
    chosen = (df[SAMPLE].fillna("") == "targeted") if SAMPLE in df.columns else u < 0
    test = (u < test_frac) & ~chosen
    masks = {
        "test": test,
        "validation": (u >= test_frac) & (u < test_frac + val_frac),
        "train": (u >= test_frac + val_frac) | ((u < test_frac) & chosen),
    }
    return {name: df[masks[name]].reset_index(drop=True) for name in SPLITS}


def _stratified(
    df: pd.DataFrame, seed: int, val_frac: float, test_frac: float
) -> dict[str, pd.DataFrame]:
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
