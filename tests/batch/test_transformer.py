"""Batch scoring of a transformer runs its serving form (ONNX Runtime, as packaged and served)
in length-sorted batches, and gives what the model gives in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sentiops.batch import job
from sentiops.models import load_model
from tests.batch.conftest import table, write
from tests.conftest import train_transformer


@pytest.mark.slow
def test_transformer_is_scored_in_its_serving_form(tmp_path: Path) -> None:
    model = train_transformer(tmp_path / "t", "tiny-distilbert", epochs=1, drift_detector=False)
    loaded = load_model(model)
    assert loaded.model.session is not None  # ONNX Runtime: the form the predictor serves
    df = table(15)
    df.loc[::4, "text"] = df.text[::4] + " and then some more words about it" * 3
    src = write(df, tmp_path / "in.parquet")
    result = job.run(str(model), str(src), str(tmp_path / "out"), batch_size=8, shard_rows=20)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model"]["serving_form"] == loaded.manifest["serving"]["form"]
    assert manifest["model"]["model_type"] == "transformer"
    out = pd.read_parquet(tmp_path / "out" / "shards").sort_values("row", ignore_index=True)
    want = loaded.predict_proba(df.text.tolist())
    got = out[[f"prob_{lab}" for lab in loaded.labels]].to_numpy()
    # int8 activations are quantized per batch, so other batches move the last digits only
    assert np.abs(got - want).max() < 0.02
    assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert set(out.model_version) == {loaded.version} and result.summary["status"]["ok"] == 45
