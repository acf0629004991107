"""A real predictor (`python -m serving`) on loopback over small trained models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sentiops.local.stack import Predictor
from sentiops.models import modeldir
from sentiops.models.tfidf import TfidfModel
from tests.conftest import make_frame


def tfidf_dir(folder: Path) -> Path:
    df = make_frame(40)
    model = TfidfModel.fit(df.text, df.label, char_ngrams=False)
    return modeldir.write(
        folder, model.save, {"model_type": "tfidf-logreg", "labels": model.labels}
    )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tfidf_dir(tmp_path_factory.mktemp("serving") / "tfidf")


@pytest.fixture(scope="session")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Predictor]:
    work = tmp_path_factory.mktemp("serving-run")
    p = Predictor(model_dir, "7", work, extra_args=["--max_batch_size=4", "--max_chars=200"])
    p.start(timeout=120)
    yield p
    p.stop()
