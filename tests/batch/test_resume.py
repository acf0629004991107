"""Resume after a real crash: `sentiops batch` killed with SIGKILL once its first shard is
written, then the same command again: the finished shards are not redone, and the output is
complete and equal to a clean run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd

from sentiops.batch import job
from tests.batch.conftest import table, write
from tests.conftest import run_cli
from tests.helpers import wait_until


def finished(out: Path) -> dict[str, int]:
    """Shards with a done record whose file is there: name -> the file's mtime (ns)."""
    done = {}
    for record in (out / "done").glob("*.json"):
        shard = out / "shards" / f"{record.stem}.parquet"
        if shard.exists():
            done[record.stem] = shard.stat().st_mtime_ns
    return done


def test_killed_run_resumes_without_redoing_finished_shards(
    model_dir: Path, tmp_path: Path
) -> None:
    src = write(table(10_000), tmp_path / "in.csv")  # 30,000 rows: 60 shards of 500
    out = tmp_path / "out"
    args = [
        "batch",
        "--model",
        model_dir,
        "--input",
        src,
        "--output",
        out,
        "--shard-rows",
        "500",
        "--batch-size",
        "64",
    ]
    exe = Path(sys.executable).with_name("sentiops")
    proc = subprocess.Popen(
        [str(exe), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:

        def first_shard() -> bool:
            assert proc.poll() is None, f"the run ended before its first shard: {proc.stderr}"
            return (out / "done" / "part-00000.json").exists()

        wait_until(first_shard, timeout=300, interval=0.01, what="the first finished shard")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    before = finished(out)
    assert 1 <= len(before) < 60, f"{len(before)} shards finished before the kill"

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    redone = 60 - len(before)
    assert f"{redone} / {len(before)} / 60" in again.stdout, again.stdout
    after = finished(out)
    assert len(after) == 60
    assert {name: after[name] for name in before} == before  # not rewritten
    assert not list((out / "shards").glob(".*"))  # no temporary file left
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 30_000 and summary["status"]["ok"] == 30_000

    clean = tmp_path / "clean"
    job.run(str(model_dir), str(src), str(clean), shard_rows=500)

    def rows(folder: Path) -> pd.DataFrame:
        return pd.read_parquet(folder / "shards").sort_values(["file", "row"], ignore_index=True)

    pd.testing.assert_frame_equal(rows(out), rows(clean))
    assert sorted(p.name for p in (out / "shards").iterdir()) == sorted(
        p.name for p in (clean / "shards").iterdir()
    )
