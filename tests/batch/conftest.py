"""Batch scoring fixtures: a small TF-IDF model directory (fast), input tables in every format."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from sentiops.models import modeldir
from sentiops.models.tfidf import TfidfModel
from tests.conftest import make_frame


def tfidf_dir(folder: Path, seed: int = 0) -> Path:
    df = make_frame(40, seed=seed)
    model = TfidfModel.fit(df.text, df.label, char_ngrams=False)
    return modeldir.write(
        folder, model.save, {"model_type": "tfidf-logreg", "labels": model.labels}
    )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tfidf_dir(tmp_path_factory.mktemp("batch-model") / "tfidf")


def table(n_per_class: int = 40, seed: int = 3) -> pd.DataFrame:
    """Texts with an id and the (input) label, in a fixed order."""
    df = make_frame(n_per_class, seed=seed).reset_index(drop=True)
    df.insert(0, "id", [f"r{i}" for i in range(len(df))])
    return df


def write(df: pd.DataFrame, path: Path) -> Path:
    """`df` as CSV / TSV / JSONL / Parquet by the file name (.gz: gzip)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        df.to_parquet(path, index=False)
        return path
    if name.endswith((".csv", ".tsv")):
        data = df.to_csv(index=False, sep="\t" if name.endswith(".tsv") else ",").encode()
    else:
        data = "".join(json.dumps(r) + "\n" for r in df.to_dict("records")).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path
