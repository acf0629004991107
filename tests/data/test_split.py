from __future__ import annotations

import pytest

from sentiops.errors import DataError
from sentiops.split import split
from tests.conftest import make_frame


def test_split_is_deterministic_stratified_and_disjoint() -> None:
    df = make_frame(50)
    a, b = split(df, seed=7), split(df, seed=7)
    for name in a:
        assert list(a[name]["text"]) == list(b[name]["text"])
    assert sum(len(p) for p in a.values()) == len(df)
    texts = [set(p["text"]) for p in a.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    counts = a["test"]["label"].value_counts()
    assert counts.max() - counts.min() <= 1  # balanced input stays balanced
    c = split(df, seed=8)
    assert list(c["test"]["text"]) != list(a["test"]["text"])


def test_bad_fractions() -> None:
    with pytest.raises(DataError, match="bad split fractions"):
        split(make_frame(10), val_frac=0.5, test_frac=0.5)
