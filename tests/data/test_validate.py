"""Every bad input gets a clear error naming the rows, a non-zero exit, and nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sentiops.data.datasets import LABELS
from sentiops.data.validate import check_overlap, validate
from tests.conftest import make_frame, run_cli


def _write(tmp_path: Path, df: pd.DataFrame, name: str = "bad.csv") -> Path:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def _train_args(path: Path, out: Path) -> list[str]:
    return [
        "train",
        "--data",
        str(path),
        "--model-type",
        "tfidf-logreg",
        "--output",
        str(out),
        "--no-track",
    ]


def test_clean_data_passes() -> None:
    clean, report = validate(make_frame(20))
    assert report.ok and report.rows_out == 60 and not report.findings


def test_duplicates_dropped_and_counted() -> None:
    df = make_frame(20)
    df = pd.concat([df, df.iloc[:3]], ignore_index=True)
    clean, report = validate(df)
    assert report.ok and len(clean) == 60
    dup = next(f for f in report.findings if f.check == "duplicates")
    assert dup.count == 3 and dup.severity == "warning"


def test_conflicting_labels_dropped() -> None:
    df = make_frame(20)
    flipped = df.iloc[[0]].copy()
    flipped["label"] = "neutral" if df.iloc[0]["label"] != "neutral" else "positive"
    clean, report = validate(pd.concat([df, flipped], ignore_index=True))
    f = next(f for f in report.findings if f.check == "conflicting_labels")
    assert f.count == 2 and df.iloc[0]["text"] not in set(clean["text"])


def test_overlap_between_splits_is_reported() -> None:
    a = pd.DataFrame({"text": ["Great Phone", "x"], "label": ["positive", "neutral"]})
    b = pd.DataFrame({"text": ["great   phone"], "label": ["positive"]})
    finding = check_overlap({"train": a, "test": b})
    assert finding is not None and finding.count == 1
    assert check_overlap({"train": a, "test": a.iloc[1:0]}) is None


@pytest.mark.parametrize(
    "case,exit_code,needle",
    [
        ("empty_text", 3, "empty_text"),
        ("unknown_label", 3, "unknown_label"),
        ("class_too_small", 3, "fewer than 10 examples"),
        ("non_utf8", 3, "non_utf8"),
        ("missing_column", 2, "missing column(s) ['label']"),
    ],
)
def test_bad_input_stops_training(tmp_path: Path, case: str, exit_code: int, needle: str) -> None:
    df = make_frame(20)
    path = tmp_path / "bad.csv"
    if case == "empty_text":
        df.loc[4, "text"] = "   "
        df.loc[7, "text"] = ""
    elif case == "unknown_label":
        df.loc[2, "label"] = "meh"
    elif case == "class_too_small":
        df = pd.concat([df[df.label != "neutral"], df[df.label == "neutral"].head(3)])
    elif case == "missing_column":
        df = df.rename(columns={"label": "sentiment"})
    df.to_csv(path, index=False)
    if case == "non_utf8":
        raw = path.read_bytes().replace(b"the ", b"th\xe9 ", 1)
        path.write_bytes(raw)
    out = tmp_path / "model"
    proc = run_cli(*_train_args(path, out))
    assert proc.returncode == exit_code, proc.stderr
    assert needle in proc.stderr
    assert "hint:" in proc.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".model.tmp-*"))
    if case == "empty_text":
        assert "bad.csv:5" in proc.stderr and "bad.csv:8" in proc.stderr  # 1-based data rows
        report = json.loads((tmp_path / "model-reports" / "validation.json").read_text())
        assert report["ok"] is False
        assert (
            (tmp_path / "model-reports" / "validation.md")
            .read_text()
            .startswith("# Data validation: FAILED")
        )
    if case == "unknown_label":
        assert "bad.csv:3" in proc.stderr and "'meh'" in proc.stderr


def test_drop_invalid_turns_row_errors_into_warnings() -> None:
    df = make_frame(20)
    df.loc[0, "text"] = " "
    df.loc[1, "label"] = "meh"
    clean, report = validate(df, LABELS, drop_invalid=True)
    assert report.ok and len(clean) == 58
    assert {f.check for f in report.findings} == {"empty_text", "unknown_label"}


def test_single_class_is_fatal() -> None:
    df = make_frame(20)
    _, report = validate(df[df.label == "positive"])
    assert not report.ok and any(f.check == "single_class" for f in report.errors)
