"""`sentiops batch` with the model, the input and the output on a real S3 server (rclone serve
s3): a prefix of files and a single object in, Parquet shards and records out, resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sentiops.batch import job
from sentiops.store import storage
from tests.batch.conftest import table, write
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def read_shards(prefix: str, folder: Path) -> pd.DataFrame:
    local = storage.get_dir(prefix, folder)  # every object's sha256 verified
    return pd.read_parquet(local).sort_values(["file", "row"], ignore_index=True)


def test_s3_in_and_out_resumes(s3, model_dir: Path, tmp_path: Path) -> None:
    model = storage.put_dir(model_dir, "s3://models/sentiment/1")
    store = storage.S3Store()
    store.ensure_bucket("data")
    a, b = table(10, seed=1), table(5, seed=2)
    store.upload_file(write(a, tmp_path / "in" / "a.csv"), "s3://data/in/a.csv")
    store.upload_file(write(b, tmp_path / "in" / "sub" / "b.parquet"), "s3://data/in/sub/b.csv")
    args = [
        "batch",
        "--model",
        model,
        "--input",
        "s3://data/in/a.csv",
        "--output",
        "s3://results/job",
        "--shard-rows",
        "12",
    ]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    assert "3 / 0 / 3" in res.stdout and "s3://results/job/shards/" in res.stdout
    keys = set(store.list_keys("s3://results/job/"))
    assert keys == {
        "job/manifest.json",
        "job/summary.json",
        *(
            f"job/{d}/part-0000{i}.{x}"
            for i in range(3)
            for d, x in (("shards", "parquet"), ("done", "json"))
        ),
    }
    out = read_shards("s3://results/job/shards/", tmp_path / "back")
    local = tmp_path / "local"
    job.run(str(model_dir), str(tmp_path / "in" / "a.csv"), str(local), shard_rows=12)
    pd.testing.assert_frame_equal(
        out, pd.read_parquet(local / "shards").sort_values(["file", "row"], ignore_index=True)
    )
    # resumed: nothing to do; then one done record lost: only that shard again
    assert "0 / 3 / 3" in run_cli(*args).stdout
    store.remove("s3://results/job/done/part-00001.json")
    again = run_cli(*args)
    assert again.returncode == 0 and "1 / 2 / 3" in again.stdout, again.stdout
    summary = json.loads(storage.get_file("s3://results/job/summary.json").read_text())
    assert summary["rows"] == 30 and summary["model"]["uri"] == model

    # a prefix of two files (one a Parquet file under a .csv name: --format says how to read)
    res = run_cli(
        "batch", "--model", model, "--input", "s3://data/in", "--output", "s3://results/mixed"
    )
    assert res.returncode == 2 and "cannot read sub/b.csv as CSV" in res.stderr
    store.upload_file(write(b, tmp_path / "b.csv"), "s3://data/in/sub/b.csv")
    res = run_cli(
        "batch",
        "--model",
        model,
        "--input",
        "s3://data/in",
        "--output",
        "s3://results/two",
        "--keep",
        "id",
    )
    assert res.returncode == 0, res.stderr
    out = read_shards("s3://results/two/shards/", tmp_path / "two")
    assert out.groupby("file").size().to_dict() == {"a.csv": 30, "sub/b.csv": 15}
    assert out.id.tolist() == a.id.tolist() + b.id.tolist()


def test_s3_errors_say_what_and_how(s3, model_dir: Path, tmp_path: Path) -> None:
    model = storage.put_dir(model_dir, "s3://models/sentiment/1")
    res = run_cli(
        "batch", "--model", model, "--input", "s3://data/nothing", "--output", "s3://results/x"
    )
    assert res.returncode == 2, res.stderr
    assert "input not found: there is no bucket 'data'" in " ".join(res.stderr.split())
    storage.S3Store().ensure_bucket("data")
    res = run_cli(
        "batch", "--model", model, "--input", "s3://data/nothing", "--output", "s3://results/x"
    )
    assert res.returncode == 2, res.stderr
    assert "input not found: nothing under s3://data/nothing" in " ".join(res.stderr.split())
    res = run_cli(
        "batch",
        "--model",
        "s3://models/none",
        "--input",
        "s3://data/nothing",
        "--output",
        "s3://results/x",
    )
    assert res.returncode == 4 and "no SentiOps model at s3://models/none" in res.stderr
    assert "Traceback" not in res.stderr
