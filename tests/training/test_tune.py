from __future__ import annotations

import json
from pathlib import Path

import mlflow

from tests.conftest import invoke, make_frame


def test_tune_runs_trials_as_child_runs(runner, tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    make_frame(20).to_csv(csv, index=False)
    out = tmp_path / "best.json"
    res = invoke(runner, "tune", "--data", csv, "--trials", "3", "--output-json", out)
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert len(result["trials"]) == 3
    assert result["best_val_macro_f1"] == max(t["value"] for t in result["trials"])
    assert {"c", "ngram_max", "char_ngrams"} == set(result["best_params"])
    runs = mlflow.search_runs(experiment_names=["sentiops"])
    parents = runs[runs["tags.mlflow.runName"] == "tune-tfidf-logreg"]
    assert len(parents) == 1
    children = runs[runs["tags.mlflow.parentRunId"] == parents.iloc[0]["run_id"]]
    assert len(children) == 3
    assert "best" in res.output
