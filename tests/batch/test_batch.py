"""Batch scoring on local files: every format, bad rows, bounded memory, kept columns, resume
and refusals, the CLI's errors."""

from __future__ import annotations

import gzip
import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sentiops.batch import job
from sentiops.batch.output import Output
from sentiops.errors import ConfigError, DataError, ModelError
from sentiops.models import load_model
from tests.batch.conftest import table, write
from tests.conftest import invoke, run_cli


def shards(output: Path) -> pd.DataFrame:
    return pd.read_parquet(output / "shards").sort_values(["file", "row"], ignore_index=True)


def assert_scored_like_the_model(out: pd.DataFrame, df: pd.DataFrame, model_dir: Path) -> None:
    loaded = load_model(model_dir)
    want = loaded.predict_proba(df.text.tolist())
    probs = out[[f"prob_{lab}" for lab in loaded.labels]].to_numpy()
    assert np.allclose(probs, want, atol=1e-6)
    assert out.label.tolist() == [loaded.labels[i] for i in want.argmax(axis=1)]
    assert np.allclose(out.confidence, want.max(axis=1), atol=1e-6)
    assert set(out.model_version) == {loaded.version}
    assert set(out.status) == {"ok"} and out.error.isna().all()


# ------------------------------------------------------------------------------ formats
@pytest.mark.parametrize(
    "name", ["in.csv", "in.tsv", "in.csv.gz", "in.jsonl", "in.jsonl.gz", "in.parquet"]
)
def test_every_format_is_scored_row_for_row(model_dir: Path, tmp_path: Path, name: str) -> None:
    df = table(40)  # 120 rows: shards of 50, 50, 20; batches of 7 (a last short one)
    src = write(df, tmp_path / name)
    result = job.run(str(model_dir), str(src), str(tmp_path / "out"), shard_rows=50, batch_size=7)
    assert [r["rows"] for r in result.scored] == [50, 50, 20] and not result.skipped
    out = shards(tmp_path / "out")
    assert out.row.tolist() == list(range(120)) and set(out.file) == {name}
    assert out.id.tolist() == df.id.tolist() and out.text.tolist() == df.text.tolist()
    assert out.input_label.tolist() == df.label.tolist()  # an input column named like ours
    assert_scored_like_the_model(out, df, model_dir)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows"] == 120 and summary["status"]["ok"] == 120
    assert sum(summary["labels"].values()) == 120


def test_a_csv_is_parsed_once_for_all_its_shards(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small Arrow blocks that straddle the shards' bounds: one reader goes through the file
    once, every shard gets exactly its rows."""
    from sentiops.batch import inputs

    monkeypatch.setattr(inputs, "CSV_BLOCK_BYTES", 2048)  # ~40 rows a block
    df = table(100)
    src = write(df, tmp_path / "in.csv")
    job.plan_job(str(model_dir), str(src), str(tmp_path / "out"), shard_rows=37)
    opened = []
    real = inputs._csv_open

    def counting(path, delimiter, include, malformed=None):  # noqa: ANN001, ANN202
        opened.append(include)
        return real(path, delimiter, include, malformed)

    monkeypatch.setattr(inputs, "_csv_open", counting)
    result = job.score_shards(str(model_dir), str(tmp_path / "out"), batch_size=5)
    assert [r["rows"] for r in result.scored] == [37] * 8 + [4]
    assert [c for c in opened if c is not None] == [["text", "id", "label"]]  # one pass
    out = shards(tmp_path / "out")
    assert out.id.tolist() == df.id.tolist()
    assert_scored_like_the_model(out, df, model_dir)


def test_a_directory_of_files(model_dir: Path, tmp_path: Path) -> None:
    a, b = table(10, seed=1), table(5, seed=2)
    write(a, tmp_path / "in" / "a.csv")
    write(b, tmp_path / "in" / "more" / "b.csv")
    (tmp_path / "in" / "README.md").write_text("not input")
    (tmp_path / "in" / "_SUCCESS").write_text("")
    write(a, tmp_path / "in" / ".hidden.csv")
    out_dir = tmp_path / "in" / "scored"  # the output inside the input: never read back
    result = job.run(str(model_dir), str(tmp_path / "in"), str(out_dir), shard_rows=20)
    assert [(r["file"], r["rows"]) for r in result.scored] == [
        ("a.csv", 20),
        ("a.csv", 10),
        ("more/b.csv", 15),
    ]
    out = shards(out_dir)
    assert out.groupby("file").size().to_dict() == {"a.csv": 30, "more/b.csv": 15}
    assert_scored_like_the_model(out, pd.concat([a, b], ignore_index=True), model_dir)
    again = job.run(str(model_dir), str(tmp_path / "in"), str(out_dir), shard_rows=20)
    assert not again.scored and len(again.skipped) == 3


def test_kept_columns(model_dir: Path, tmp_path: Path) -> None:
    src = write(table(5), tmp_path / "in.parquet")
    job.run(str(model_dir), str(src), str(tmp_path / "o1"), keep=["none"])
    assert "id" not in shards(tmp_path / "o1").columns
    job.run(str(model_dir), str(src), str(tmp_path / "o2"), keep=["id"])
    cols = list(shards(tmp_path / "o2").columns)
    assert cols[:4] == ["file", "row", "id", "text"] and "input_label" not in cols
    with pytest.raises(DataError, match="no column.*user to keep; its columns: id, text, label"):
        job.run(str(model_dir), str(src), str(tmp_path / "o3"), keep=["user"])


# ------------------------------------------------------------------------------ bad rows
def test_bad_rows_get_an_outcome_and_never_fail_the_job(model_dir: Path, tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_bytes(
        b"id,text\n1,a great phone\n2,\n3,   \n4,"
        + b"x" * 300
        + b'\n5,\xff\xfe not utf-8\n6,"a,b",extra\n7,an awful app\n'
    )
    result = job.run(str(model_dir), str(csv), str(tmp_path / "o1"), max_chars=200)
    out = shards(tmp_path / "o1")
    assert out.id.tolist() == ["1", "2", "3", "4", "5", "7"]  # the malformed line is skipped
    assert out.status.tolist() == ["ok", "empty", "empty", "too_long", "not_text", "ok"]
    assert out.error[3] == "300 characters, more than the limit of 200"
    assert out.error[4] == "the text is not UTF-8"
    assert out.label.isna().tolist() == [False, True, True, True, True, False]
    assert out.prob_positive.isna().tolist() == out.label.isna().tolist()
    assert result.summary["malformed"] == 1
    assert "3 fields, expected 2" in result.summary["files"][0]["malformed_examples"][0]

    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_bytes(
        b'{"text": "a great phone"}\n{not json}\n\n[1, 2]\n{"text": 42}\n'
        b'{"other": "x"}\n{"text": null}\n{"text": "an awful app"}\n'
    )
    job.run(str(model_dir), str(jsonl), str(tmp_path / "o2"), keep=["other"])
    out = shards(tmp_path / "o2")
    assert out.status.tolist() == [
        "ok",
        "unreadable",
        "unreadable",
        "not_text",
        "empty",
        "empty",
        "ok",
    ]
    assert out.error[1].startswith("not a JSON line") and out.error[2] == (
        "a JSON list, not an object"
    )
    assert out.error[3] == "the value is a int, not text"
    assert out.other.tolist() == [None, None, None, None, "x", None, None]


# ------------------------------------------------------------------------------ memory
class Recording:
    """A loaded model that records the text lengths of every batch it is asked to score."""

    def __init__(self, loaded) -> None:  # noqa: ANN001
        self.loaded = loaded
        self.version = loaded.version
        self.labels = loaded.labels
        self.batches: list[list[int]] = []

    def predict_proba(self, texts):  # noqa: ANN001, ANN201
        self.batches.append([len(t) for t in texts])
        return self.loaded.predict_proba(texts)

    def read_fraction(self, texts):  # noqa: ANN001, ANN201
        return self.loaded.read_fraction(texts)


def _peak_heap(model_dir: Path, src: Path, out: Path) -> tuple[int, job.Result]:
    tracemalloc.start()
    try:
        result = job.run(
            str(model_dir), str(src), str(out), batch_size=32, shard_rows=4_000, keep=["none"]
        )
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_the_window_not_the_file(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of 9,000 rows, far larger than a batch of 32: the reader hands over chunks of at
    most one window (16 batches = 512 rows), the model sees length-sorted batches of at most 32,
    and the Python heap's peak is that of a file ten times smaller."""
    rng = np.random.default_rng(0)

    def texts(n: int) -> pd.DataFrame:
        df = table(n)
        df["text"] = [
            t + " " + "word " * int(k)
            for t, k in zip(df.text, rng.integers(0, 30, len(df)), strict=True)
        ]
        return df

    small, big = write(texts(300), tmp_path / "small.csv"), write(texts(3000), tmp_path / "big.csv")
    recording: list[Recording] = []
    real = job.load

    def load(model, plan, settings=None):  # noqa: ANN001, ANN202
        recording.append(Recording(real(model, plan, settings)))
        return recording[-1]

    monkeypatch.setattr(job, "load", load)
    job.run(str(model_dir), str(write(table(3), tmp_path / "warm.csv")), str(tmp_path / "warm"))
    peak_small, _ = _peak_heap(model_dir, small, tmp_path / "o1")
    peak_big, result = _peak_heap(model_dir, big, tmp_path / "o2")
    assert result.summary["rows"] == 9_000
    assert max(r["largest_chunk_rows"] for r in result.scored) == 512
    batches = recording[-1].batches
    assert sum(map(len, batches)) == 9_000 and max(map(len, batches)) == 32
    assert all(batch == sorted(batch) for batch in batches)  # sorted by length
    assert peak_big < 1.5 * peak_small, (peak_small, peak_big, big.stat().st_size)


# ------------------------------------------------------------------------------ resume
def test_rerun_skips_finished_shards_and_redoes_broken_ones(
    model_dir: Path, tmp_path: Path
) -> None:
    src = write(table(40), tmp_path / "in.csv")
    out = tmp_path / "out"
    first = job.run(str(model_dir), str(src), str(out), shard_rows=25)
    before = shards(out)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.parquet")}
    assert len(stamps) == 5 and len(first.scored) == 5
    (out / "done" / "part-00001.json").unlink()  # killed between the shard and its record
    broken = out / "shards" / "part-00003.parquet"
    broken.write_bytes(broken.read_bytes()[:-10])  # truncated
    (out / "shards" / ".part-00004.deadbeef.parquet").write_bytes(b"half")  # a killed write
    again = job.run(str(model_dir), str(src), str(out), shard_rows=25)
    assert [r["name"] for r in again.scored] == ["part-00001", "part-00003"]
    assert len(again.skipped) == 3
    for name in ("part-00000.parquet", "part-00002.parquet", "part-00004.parquet"):
        assert (out / "shards" / name).stat().st_mtime_ns == stamps[name]
    assert not list((out / "shards").glob(".*"))
    pd.testing.assert_frame_equal(shards(out), before)
    third = job.run(str(model_dir), str(src), str(out), shard_rows=25)
    assert not third.scored and len(third.skipped) == 5


def test_a_different_job_is_refused_unless_restarted(model_dir: Path, tmp_path: Path) -> None:
    src = write(table(10), tmp_path / "in.csv")
    out = tmp_path / "out"
    job.run(str(model_dir), str(src), str(out))
    with pytest.raises(DataError, match="differs from this one: text_column 'text' -> 'id'"):
        job.run(str(model_dir), str(src), str(out), text_column="id")
    write(table(11), src)
    os.utime(src, ns=(1, 1))
    with pytest.raises(DataError, match="input file in.csv changed") as info:
        job.run(str(model_dir), str(src), str(out))
    assert "--restart" in info.value.hint
    redone = job.run(str(model_dir), str(src), str(out), restart=True)
    assert redone.summary["rows"] == 33 and len(shards(out)) == 33
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="is not empty and holds no batch job"):
        job.run(str(model_dir), str(src), str(other))


def test_the_scorer_refuses_another_model_version(model_dir: Path, tmp_path: Path) -> None:
    from tests.batch.conftest import tfidf_dir

    src = write(table(10), tmp_path / "in.csv")
    out = tmp_path / "out"
    job.plan_job(str(model_dir), str(src), str(out))
    other = tfidf_dir(tmp_path / "other", seed=9)
    assert load_model(other).version != load_model(model_dir).version
    with pytest.raises(ModelError, match="the job was planned with"):
        job.score_shards(str(other), str(out))
    with pytest.raises(DataError, match="1 of 1 shards are not finished: part-00000"):
        job.summarize(str(out))
    with pytest.raises(ConfigError, match="shard 5 does not exist"):
        job.score_shards(str(model_dir), str(out), [5])
    assert Output(str(out)).read_json("manifest.json")["rows"] == 30


# ------------------------------------------------------------------------------ CLI
def test_cli_scores_and_resumes(model_dir: Path, tmp_path: Path, runner) -> None:
    src = write(table(20), tmp_path / "in.jsonl")
    args = [
        "batch",
        "--model",
        model_dir,
        "--input",
        src,
        "--output",
        tmp_path / "out",
        "--shard-rows",
        "25",
        "--batch-size",
        "16",
    ]
    res = invoke(runner, *args)
    assert res.exit_code == 0, res.output
    assert "3 / 0 / 3" in res.output and "texts/s" in res.output
    res = invoke(runner, *args)
    assert res.exit_code == 0 and "0 / 3 / 3" in res.output
    assert len(shards(tmp_path / "out")) == 60


@pytest.mark.parametrize(
    ("make", "extra", "code", "message"),
    [
        (None, [], 2, "input not found: "),
        ("in.csv", ["--text-column", "body"], 2, "has no column 'body'; its columns: id, text"),
        ("in.csv", ["--format", "xml"], 2, "unknown --format 'xml'"),
        ("in.csv", ["--batch-size", "0"], 2, "batch size 0 < 1"),
        ("in.csv", ["--shard-rows", "0"], 2, "shard rows 0 < 1"),
        ("dir", [], 2, "no input files in"),
        ("mixed", [], 2, "mixes input formats (csv, parquet)"),
        ("broken.parquet", [], 2, "cannot read broken.parquet as PARQUET"),
        ("empty.csv", [], 2, "cannot read empty.csv as CSV"),
        ("in.csv", ["--model", "nowhere"], 4, "model directory not found: nowhere"),
    ],
)
def test_cli_bad_input_says_what_and_how(
    model_dir: Path, tmp_path: Path, runner, make, extra, code, message
) -> None:
    src = tmp_path / (make or "missing.csv")
    if make == "in.csv":
        write(table(3), src)
    elif make == "dir":
        src.mkdir()
        (src / "notes.txt").write_text("x")
    elif make == "mixed":
        write(table(3), src / "a.csv")
        write(table(3), src / "b.parquet")
    elif make == "broken.parquet":
        src.write_bytes(b"not parquet at all")
    elif make == "empty.csv":
        src.write_bytes(b"")
    args = ["batch", "--model", model_dir, "--input", src, "--output", tmp_path / "out", *extra]
    res = invoke(runner, *args)
    assert res.exit_code == code, res.output
    assert message in " ".join(res.output.split()), res.output
    assert "hint:" in res.output and "Traceback" not in res.output


def test_cli_subprocess_exit_code_and_no_traceback(model_dir: Path, tmp_path: Path) -> None:
    src = write(table(3), tmp_path / "in.csv")
    res = run_cli(
        "batch",
        "--model",
        model_dir,
        "--input",
        src,
        "--output",
        tmp_path / "o",
        "--text-column",
        "body",
    )
    assert res.returncode == 2
    assert "error: in.csv has no column 'body'; its columns: id, text, label" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_gzip_and_tsv_names_need_no_format(tmp_path: Path) -> None:
    from sentiops.batch.inputs import find

    for name in ("a.csv.gz", "b.tsv", "c.ndjson", "d.pq"):
        (tmp_path / name).write_bytes(gzip.compress(b"x") if name.endswith(".gz") else b"x")
    kinds = {f.name: (f.format, f.delimiter) for f in find(str(tmp_path / "a.csv.gz"))}
    kinds |= {f.name: (f.format, f.delimiter) for f in find(str(tmp_path / "b.tsv"))}
    kinds |= {f.name: f.format for f in find(str(tmp_path / "c.ndjson"))}  # type: ignore[misc]
    kinds |= {f.name: f.format for f in find(str(tmp_path / "d.pq"))}  # type: ignore[misc]
    assert kinds == {
        "a.csv.gz": ("csv", ","),
        "b.tsv": ("csv", "\t"),
        "c.ndjson": "jsonl",
        "d.pq": "parquet",
    }
    assert [f.format for f in find(str(tmp_path / "b.tsv"), "jsonl")] == ["jsonl"]
