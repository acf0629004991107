"""Deterministic train / validation / test split that adding data never disturbs.

The rows of the first data source (the original dataset) are split stratified by label with
the seed, exactly as they would be on their own. Rows of any other source (labels collected
from live traffic, added for retraining) go to a split by a hash of their text: the same text
always lands in the same split, whatever else is added. So a retraining run's test set holds
the original test rows (none of which any earlier model trained on) plus a held-out share of
the new labels, and a text never moves from one split to another between runs. Only labels of
the random evaluation sample (`sample` = random, see `sentiops.feedback`) may be test rows:
labels chosen for training (the most uncertain texts) are no sample of the traffic, so their
test share goes to training instead, and the gate's live test share estimates live accuracy.
"""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from sentiops.data import LABEL, SAMPLE, SOURCE, TEXT
from sentiops.errors import DataError

SPLITS = ("train", "validation", "test")


def split(
    df: pd.DataFrame, seed: int = 42, val_frac: float = 0.1, test_frac: float = 0.2
) -> dict[str, pd.DataFrame]:
    """The first source stratified by label with `seed`; the others by text hash."""
    if not 0 < val_frac < 1 or not 0 < test_frac < 1 or val_frac + test_frac >= 1:
        raise DataError(
            f"bad split fractions val={val_frac} test={test_frac}",
            "both must be in (0, 1) and sum to less than 1",
        )
    if SOURCE in df.columns and len(df) and df[SOURCE].nunique() > 1:
        first = df[SOURCE].iloc[0]
        anchor, added = df[df[SOURCE] == first], df[df[SOURCE] != first]
        parts = _stratified(anchor, seed, val_frac, test_frac)
        extra = _by_hash(added, val_frac, test_frac)
        return {name: pd.concat([parts[name], extra[name]], ignore_index=True) for name in SPLITS}
    return _stratified(df, seed, val_frac, test_frac)


ORIGINAL, ADDED = "original", "added"


def groups(df: pd.DataFrame) -> list[str] | None:
    """Each row's group for the gate: "original" (the first source, whose rows `split` puts
    first in every part) or "added" (every other source); None for one source only."""
    if SOURCE not in df.columns or not len(df) or df[SOURCE].nunique() < 2:
        return None
    first = df[SOURCE].iloc[0]
    return [ORIGINAL if s == first else ADDED for s in df[SOURCE]]


def _by_hash(df: pd.DataFrame, val_frac: float, test_frac: float) -> dict[str, pd.DataFrame]:
    import hashlib

    from sentiops.validate import normalize_text

    def bucket(text: str) -> float:
        digest = hashlib.sha256(normalize_text(str(text)).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    u = df[TEXT].map(bucket)
    # a row that is not from the random evaluation sample never tests (a source without the
    # column is taken as a sample of its own, as before)
    chosen = (df[SAMPLE].fillna("") == "targeted") if SAMPLE in df.columns else u < 0
    test = (u < test_frac) & ~chosen
    masks = {"test": test, "validation": (u >= test_frac) & (u < test_frac + val_frac),
             "train": (u >= test_frac + val_frac) | ((u < test_frac) & chosen)}  # fmt: skip
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
