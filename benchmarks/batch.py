"""Batch scoring benchmark: texts/s of `sentiops batch` against the in-process ceiling.

    make bench-batch     # = .venv/bin/python benchmarks/batch.py

Input: the `vader-tweets` texts (4,200 tweets) repeated to `--tfidf-rows` / `--transformer-rows`
rows, one CSV file per run (the common case: parsing is part of the job). Each measurement is
taken `--repeat` times, the ceiling and the command alternating, and the best of each is kept
(on a shared machine the best round is the one least disturbed).

- ceiling: the model in this process, every text already in memory, sorted by length and fed
  to `predict_proba` in batches of `--batch-size` (the best any batch job can do with it);
- `sentiops batch`: the real command in a subprocess (CSV streamed in chunks, shards written as
  Parquet with their checksummed done records, the progress bar off as in a log): texts/s
  over the scoring (the shards' own time) and over the whole command (process start, model
  load, counting the rows, scoring, summary), and its peak RSS;
- the TF-IDF baseline at two sizes: memory stays flat as the input grows.

Wall-clock texts/s on a machine shared with other jobs move with their load; texts per
CPU-second (this process's CPU time, all its threads) much less, so the ratio to the ceiling
is taken from those.

Models: the TF-IDF baseline fitted on the tweets here; the transformer is `--transformer DIR`
(e.g. `make run`'s champion, `.sentiops/store/models/sentiment/<n>/`) or, without it,
all-MiniLM-L6-v2 fine-tuned briefly here on the tweets (its throughput is the architecture's
and the serving form's, not the fine-tuning's). Both run the serving form in their model
directory (`sentiops.models.load_model`), as the predictor does.

Prints a table and writes benchmarks/results/batch.md and batch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from sentiops.data.datasets import LABEL, TEXT, load
from sentiops.models import load_model, modeldir


def tweets() -> pd.DataFrame:
    return load(["vader-tweets"])[[TEXT, LABEL]].reset_index(drop=True)


def tfidf_model(folder: Path, df: pd.DataFrame) -> Path:
    from sentiops.models.tfidf import TfidfModel

    if not (folder / "model.json").exists():
        model = TfidfModel.fit(df[TEXT].tolist(), df[LABEL].tolist())
        modeldir.write(folder, model.save, {"model_type": "tfidf-logreg", "labels": model.labels})
    return folder


def transformer_model(folder: Path, df: pd.DataFrame) -> Path:
    """all-MiniLM-L6-v2 fine-tuned for one short epoch (600 tweets), packaged with its serving
    form as training packages every transformer."""
    from sentiops.params import TrainConfig
    from sentiops.training.train import train

    if (folder / "m" / "model.json").exists():
        return folder / "m"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "tweets.csv"
    df.to_csv(data, index=False)
    cfg = TrainConfig.model_validate(
        {
            "data": [str(data)],
            "output": folder / "m",
            "model_type": "transformer",
            "base_model": "offline",
            "epochs": 1,
            "max_length": 64,
            "max_train_examples": 600,
            "track": False,
            "drift_detector": False,
        }
    )
    return train(cfg, progress=False).model_dir


def ceiling(model_dir: Path, texts: list[str], batch_size: int) -> dict[str, float]:
    """The model in this process over pre-loaded, length-sorted batches."""
    loaded = load_model(model_dir)
    loaded.predict_proba(texts[:batch_size])  # warm up (sessions, caches)
    ordered = sorted(texts, key=len)
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    start, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        loaded.predict_proba(batch)
    secs, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "texts_per_sec": len(texts) / secs,
        "seconds": secs,
        "texts_per_cpu_sec": len(texts) / cpu,
    }


def batch_command(
    model_dir: Path, src: Path, out: Path, batch_size: int, shard_rows: int
) -> dict[str, Any]:
    """`sentiops batch` in a subprocess: wall time, peak RSS (wait4) and its summary."""
    shutil.rmtree(out, ignore_errors=True)
    exe = Path(sys.executable).with_name("sentiops")
    cmd = [
        str(exe),
        "batch",
        "--model",
        str(model_dir),
        "--input",
        str(src),
        "--output",
        str(out),
        "--batch-size",
        str(batch_size),
        "--shard-rows",
        str(shard_rows),
        "--keep",
        "none",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        out_text = proc.stdout.read() if proc.stdout else ""
        err_text = proc.stderr.read() if proc.stderr else ""
        raise SystemExit(f"sentiops batch failed ({code}):\n{out_text}\n{err_text}")
    summary = json.loads((out / "summary.json").read_text())
    ok = summary["status"]["ok"]
    return {
        "rows": summary["rows"],
        "shards": summary["shards"],
        "wall_seconds": wall,
        "shard_seconds": summary["shard_seconds"],
        "texts_per_sec": ok / summary["shard_seconds"],
        "texts_per_cpu_sec": ok / summary["shard_cpu_seconds"],
        "texts_per_sec_wall": ok / wall,
        "cpu_seconds_wall": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path(".sentiops") / "bench-batch")
    ap.add_argument("--tfidf-rows", default="20000,100000", help="sizes of the TF-IDF runs")
    ap.add_argument("--transformer-rows", type=int, default=4200)
    ap.add_argument(
        "--transformer",
        type=Path,
        default=None,
        help="a transformer model directory (default: fine-tune one here)",
    )
    ap.add_argument("--no-transformer", action="store_true")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shard-rows", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds per run (best of each kept)")
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    df = tweets()
    models = {"tfidf-logreg": tfidf_model(args.workdir / "tfidf", df)}
    if not args.no_transformer:
        models["transformer"] = args.transformer or transformer_model(args.workdir / "tr", df)
    runs = [("tfidf-logreg", int(n)) for n in args.tfidf_rows.split(",")]
    if not args.no_transformer:
        runs.append(("transformer", args.transformer_rows))
    rows = []
    for kind, n in runs:
        model_dir = models[kind]
        manifest = modeldir.read_manifest(model_dir, verify=False)
        form = (manifest.get("serving") or {}).get("form") or "sklearn"
        texts = (df[TEXT].tolist() * (n // len(df) + 1))[:n]
        src = args.workdir / f"tweets-{n}.csv"
        if not src.exists():
            pd.DataFrame({"id": range(n), "text": texts}).to_csv(src, index=False)
        tops, cmds = [], []
        for i in range(args.repeat):  # alternated, the best of each kept: the machine is shared
            print(
                f"{kind} ({form}), {n:,} rows, round {i + 1}/{args.repeat}: ceiling ...", flush=True
            )
            tops.append(ceiling(model_dir, texts, args.batch_size))
            print(
                f"  ceiling {tops[-1]['texts_per_sec']:,.0f} texts/s; sentiops batch ...",
                flush=True,
            )
            cmds.append(
                batch_command(
                    model_dir,
                    src,
                    args.workdir / f"out-{kind}-{n}",
                    args.batch_size,
                    args.shard_rows,
                )
            )
            print(f"  batch {cmds[-1]['texts_per_sec']:,.0f} texts/s scoring", flush=True)
        top = max(tops, key=lambda r: r["texts_per_sec"])
        top["texts_per_cpu_sec"] = max(r["texts_per_cpu_sec"] for r in tops)
        run = max(cmds, key=lambda r: r["texts_per_sec"])
        run["texts_per_cpu_sec"] = max(r["texts_per_cpu_sec"] for r in cmds)
        run["texts_per_sec_wall"] = max(r["texts_per_sec_wall"] for r in cmds)
        run["wall_seconds"] = min(r["wall_seconds"] for r in cmds)
        run["peak_rss_mb"] = max(r["peak_rss_mb"] for r in cmds)
        run["all_ceiling"] = [round(r["texts_per_sec"]) for r in tops]
        run["all_batch"] = [round(r["texts_per_sec"]) for r in cmds]
        row = {
            "model": kind,
            "form": form,
            "version": manifest["version"],
            "rows": n,
            "file_mb": src.stat().st_size / 1e6,
            "ceiling": top["texts_per_sec"],
            "ceiling_per_cpu_sec": top["texts_per_cpu_sec"],
            **run,
        }
        rows.append(row)
        print(
            f"  batch {run['texts_per_sec']:,.0f} texts/s scoring, "
            f"{run['texts_per_sec_wall']:,.0f} whole command, peak RSS "
            f"{run['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    lines = write(
        args.results, rows, args, time.perf_counter() - t0, str(models.get("transformer", ""))
    )
    print("\n".join(lines))


def write(
    results: Path,
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    secs: float,
    transformer: str = "",
) -> list[str]:
    cpu = os.cpu_count()
    lines = [
        "| model (form) | rows (CSV MB) | shards | ceiling texts/s | `sentiops batch` texts/s "
        "(scoring) | ceiling texts per CPU-s | `sentiops batch` texts per CPU-s | of the "
        "ceiling (CPU) | whole command texts/s (s) | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} ({r['form']}) | {r['rows']:,} ({r['file_mb']:.1f}) | {r['shards']} | "
            f"{r['ceiling']:,.0f} | {r['texts_per_sec']:,.0f} | "
            f"{r['ceiling_per_cpu_sec']:,.0f} | {r['texts_per_cpu_sec']:,.0f} | "
            f"{r['texts_per_cpu_sec'] / r['ceiling_per_cpu_sec']:.0%} | "
            f"{r['texts_per_sec_wall']:,.0f} ({r['wall_seconds']:.1f}) | {r['peak_rss_mb']:.0f} |"
        )
    note = (
        f"best of {args.repeat} alternated rounds each; batch size {args.batch_size}, "
        f"shards of {args.shard_rows:,} rows; {cpu} cores "
        f"({platform.processor() or platform.machine()}), {time.strftime('%Y-%m-%d')}; "
        f"benchmark {secs:.0f} s" + (f"; transformer {transformer}" if transformer else "")
    )
    results.mkdir(parents=True, exist_ok=True)
    (results / "batch.json").write_text(json.dumps({"rows": rows, "note": note}, indent=2))
    (results / "batch.md").write_text(
        "# Batch scoring: `sentiops batch` vs the in-process ceiling\n\n"
        "Command: `make bench-batch` (`benchmarks/batch.py`).\n\n"
        + "\n".join(lines)
        + f"\n\n{note}\n"
    )
    return [*lines, "", note]


if __name__ == "__main__":
    main()
