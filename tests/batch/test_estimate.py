"""A batch job's summary estimates its performance without labels: the shards' sums of the
served probabilities added up equal the estimate over every scored row at once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sentiops.batch import job
from sentiops.estimation import performance
from tests.batch.conftest import table, write


def test_the_summary_estimates_the_whole_job(model_dir: Path, tmp_path: Path) -> None:
    df = table(40)
    df.loc[5, "text"] = ""  # not scored: left out of the estimate
    src = write(df, tmp_path / "in.csv")
    result = job.run(str(model_dir), str(src), str(tmp_path / "out"), shard_rows=50)
    est = result.summary["estimate"]
    out = pd.read_parquet(tmp_path / "out" / "shards").sort_values("row")
    ok = out[out.status == "ok"]
    labels = ["negative", "neutral", "positive"]
    whole = performance.estimate(ok[[f"prob_{k}" for k in labels]].to_numpy(), labels)
    assert est["rows"] == len(ok) == 119
    assert est["accuracy"] == whole.accuracy.to_dict()
    assert est["macro_f1"] == whole.macro_f1.to_dict()
    assert est["accuracy"]["value"] == pytest.approx(float(np.mean(ok.confidence)), abs=1e-4)
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["estimate"]["recall"].keys() == set(labels)
