from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sentiops.config import Settings
from sentiops.data import datasets as data
from sentiops.errors import DataError
from tests.conftest import invoke, make_frame


@pytest.mark.parametrize(
    "score,label",
    [
        (0.5, "positive"),
        (3.2, "positive"),
        (0.49, "neutral"),
        (-0.49, "neutral"),
        (0.0, "neutral"),
        (-0.5, "negative"),
        (-4.0, "negative"),
    ],
)
def test_label_rule(score: float, label: str) -> None:
    assert data.label_from_score(score) == label


def test_builtin_vader_datasets(vader_cache: Path) -> None:
    s = Settings(home=vader_cache)
    tweets = data.fetch_builtin("vader-tweets", s)
    movies = data.fetch_builtin("vader-movies", s)
    assert len(tweets) == 4200
    assert len(movies) == 10605
    assert tweets["label"].value_counts().to_dict() == {
        "positive": 2345,
        "negative": 1087,
        "neutral": 768,
    }
    assert set(movies["label"]) == {"negative", "neutral", "positive"}
    assert (vader_cache / "cache" / "vader" / data.VADER_SDIST_FILE).exists()


def test_builtin_rejects_tampered_sdist(vader_cache: Path, tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "h")
    cached = s.cache_dir / "vader" / data.VADER_SDIST_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the real sdist")
    # a bad cached file is re-downloaded and verified, not trusted
    df = data.fetch_builtin("vader-tweets", s)
    assert len(df) == 4200


def test_unknown_builtin() -> None:
    with pytest.raises(DataError, match="unknown built-in dataset"):
        data.fetch_builtin("imdb")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_read_table_formats(tmp_path: Path, suffix: str) -> None:
    df = make_frame(5).rename(columns={"text": "body", "label": "sentiment"})
    path = tmp_path / f"d{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path)
    out = data.read_table(path, "body", "sentiment")
    assert list(out["text"]) == list(df["body"])
    assert list(out["label"]) == list(df["sentiment"])
    assert list(out[data.ROW]) == list(range(1, 16))


def test_read_table_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    pd.DataFrame({"tweet": ["a"], "label": ["positive"]}).to_csv(path, index=False)
    with pytest.raises(
        DataError, match=r"missing column\(s\) \['text'\]; found \['tweet', 'label'\]"
    ):
        data.read_table(path)


def test_read_table_keeps_non_utf8_as_escapes(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\nfine text,positive\nbad \xff\xfe bytes,negative\n")
    out = data.read_table(path)
    assert out["text"][0] == "fine text"
    assert "\udcff" in out["text"][1]


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "d.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        data.read_table(path)


def test_snapshot_is_write_once_and_content_addressed(tmp_path: Path) -> None:
    df = make_frame(5)
    m1 = data.snapshot(df, "d", ["x"], tmp_path)
    m2 = data.snapshot(df.copy(), "d", ["x"], tmp_path)
    assert m1.version == m2.version and m1.created_at == m2.created_at
    assert m1.rows == 15 and m1.label_counts == {"negative": 5, "neutral": 5, "positive": 5}
    changed = df.copy()
    changed.loc[0, "label"] = "neutral" if changed.loc[0, "label"] != "neutral" else "positive"
    assert data.snapshot(changed, "d", ["x"], tmp_path).version != m1.version
    back, manifest = data.read_snapshot(Path(m1.path))
    assert len(back) == 15 and manifest.sha256 == m1.sha256
    assert json.loads((Path(m1.path) / "manifest.json").read_text())["version"] == m1.version


def test_cli_data_fetch(runner, vader_cache: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SENTIOPS_HOME", str(vader_cache))
    res = invoke(runner, "data", "fetch", "--name", "vader-tweets", "--output-dir", tmp_path)
    assert res.exit_code == 0, res.output
    assert "4200" in res.output
    assert len(pd.read_csv(tmp_path / "vader-tweets.csv")) == 4200
