"""The CLI contract on data the project has never seen."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import invoke, make_frame, run_cli


def train_tfidf(runner, csv: Path, out: Path, *extra: str):
    """`sentiops train` of the baseline without tracking; returns the click Result."""
    return invoke(
        runner,
        "train",
        "--data",
        csv,
        "--model-type",
        "tfidf-logreg",
        "--output",
        out,
        "--no-track",
        *extra,
    )


def test_train_and_evaluate_unseen_csv(runner, tmp_path: Path) -> None:
    train_csv, other_csv = tmp_path / "a.csv", tmp_path / "b.csv"
    make_frame(25, seed=1).to_csv(train_csv, index=False)
    make_frame(25, seed=2).rename(columns={"text": "body"}).to_csv(other_csv, index=False)
    out = tmp_path / "model"
    res = invoke(
        runner,
        "train",
        "--data",
        train_csv,
        "--model-type",
        "tfidf-logreg",
        "--output",
        out,
        "--no-track",
    )
    assert res.exit_code == 0, res.output
    assert "macro-F1" in res.output and (out / "model.json").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["macro_f1"] > 0.9
    eval_json = tmp_path / "eval.json"
    res = invoke(
        runner,
        "evaluate",
        "--model",
        out,
        "--data",
        other_csv,
        "--text-column",
        "body",
        "--output-json",
        eval_json,
        "--plot",
        tmp_path / "cm.png",
    )
    assert res.exit_code == 0, res.output
    result = json.loads(eval_json.read_text())
    assert {"macro_f1", "accuracy", "per_class", "n"} <= set(result)
    assert result["n"] == 75 and result["macro_f1"] > 0.9
    assert set(result["per_class"]) == {"negative", "neutral", "positive"}
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    assert "precision" in res.output


def test_data_flag_repeats_and_concatenates(runner, tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.jsonl"
    make_frame(10, seed=1).to_csv(a, index=False)
    make_frame(10, seed=2).to_json(b, orient="records", lines=True)
    out = tmp_path / "m"
    res = invoke(
        runner,
        "train",
        "--data",
        a,
        "--data",
        b,
        "--model-type",
        "tfidf-logreg",
        "--output",
        out,
        "--no-track",
    )
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["dataset"]["rows"] == 60 and manifest["dataset"]["source"] == [str(a), str(b)]


def test_evaluate_test_split_matches_training(runner, tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    make_frame(30).to_csv(csv, index=False)
    out = tmp_path / "m"
    assert train_tfidf(runner, csv, out).exit_code == 0
    res = invoke(
        runner,
        "evaluate",
        "--model",
        out,
        "--data",
        csv,
        "--split",
        "test",
        "--output-json",
        tmp_path / "e.json",
    )
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "e.json").read_text())
    trained = json.loads((out / "metrics.json").read_text())["test"]
    assert result["n"] == trained["n"] == 18
    assert result["macro_f1"] == trained["macro_f1"]


def test_corrupt_model_exit_code(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    make_frame(15).to_csv(csv, index=False)
    out = tmp_path / "m"
    assert (
        run_cli(
            "train", "--data", csv, "--model-type", "tfidf-logreg", "--output", out, "--no-track"
        ).returncode
        == 0
    )
    (out / "tfidf.npz").write_bytes(b"garbage")
    proc = run_cli("evaluate", "--model", out, "--data", csv, "--output-json", tmp_path / "e.json")
    assert proc.returncode == 4
    assert "corrupt model directory" in proc.stderr and "hint:" in proc.stderr
    assert not (tmp_path / "e.json").exists()


def test_unknown_model_type_and_missing_file(runner, tmp_path: Path) -> None:
    res = invoke(
        runner,
        "train",
        "--data",
        tmp_path / "x.csv",
        "--model-type",
        "svm",
        "--output",
        tmp_path / "m",
        "--no-track",
    )
    assert res.exit_code == 2 and "unknown --model-type 'svm'" in res.output
    proc = run_cli(
        "train",
        "--data",
        tmp_path / "x.csv",
        "--model-type",
        "tfidf-logreg",
        "--output",
        tmp_path / "m",
        "--no-track",
    )
    assert proc.returncode == 2 and "data file not found" in proc.stderr


def test_predict_command(runner, tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    make_frame(15).to_csv(csv, index=False)
    out = tmp_path / "m"
    train_tfidf(runner, csv, out)
    res = invoke(runner, "predict", "--model", out, "the coffee was awful and bad")
    assert res.exit_code == 0 and res.output.startswith("negative")


def test_config_file_and_explicit_flags(runner, tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    make_frame(15).to_csv(csv, index=False)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"c": 0.5, "seed": 3, "model_type": "transformer"}))
    out = tmp_path / "m"
    res = train_tfidf(runner, csv, out, "--config", cfg)
    assert res.exit_code == 0, res.output
    params = json.loads((out / "model.json").read_text())["params"]
    assert params["c"] == 0.5 and params["seed"] == 3  # from the file
    assert json.loads((out / "model.json").read_text())["model_type"] == "tfidf-logreg"  # flag
    assert pd.read_csv(csv).shape[0] == 45


def test_train_extra_goes_to_training_only_without_leaks(tmp_path: Path) -> None:
    from sentiops.training.train import DataConfig, prepare

    main, extra = tmp_path / "main.csv", tmp_path / "extra.csv"
    df = make_frame(20, seed=1)
    df.to_csv(main, index=False)
    base = prepare(DataConfig(data=[str(main)]))
    leaked = base.splits["test"].iloc[:2][["text", "label"]]
    leaked = leaked.assign(text=leaked["text"].str.upper())  # same text up to case
    pd.concat([make_frame(10, seed=9), leaked]).to_csv(extra, index=False)
    prep = prepare(DataConfig(data=[str(main)], train_extra=[str(extra)]))
    assert len(prep.splits["train"]) == len(base.splits["train"]) + 30
    assert list(prep.splits["test"]["text"]) == list(base.splits["test"]["text"])
    info = next(f for f in prep.report.findings if f.check == "train_extra")
    assert "30 training-only rows" in info.message and "2 dropped" in info.message
    assert prep.manifest.version != base.manifest.version
    assert any(s.startswith("train-only:") for s in prep.manifest.source)


def test_an_unknown_serving_form_is_refused_before_training(runner, tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    make_frame(15).to_csv(csv, index=False)
    res = invoke(
        runner,
        "train",
        "--data",
        csv,
        "--model-type",
        "transformer",
        "--output",
        tmp_path / "m",
        "--serving-form",
        "student-fp16",
        "--no-track",
    )
    assert res.exit_code != 0
    assert "unknown serving form 'student-fp16'" in res.output and "student-int8" in res.output
    assert not (tmp_path / "m").exists()
