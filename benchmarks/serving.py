"""Serving benchmark: our predictor against the usual design on the same fine-tuned weights.

    make bench-serving        # or: python benchmarks/serving.py [--model DIR] [--seconds 20]

- ours: `python -m serving` (KServe ModelServer, adaptive batching, the model directory's
  serving form; `--form student-int8` (default) packages a distilled half-depth student,
  kept only when within 0.5 macro-F1 points of the fine-tuned model on validation, `--form
  auto` the fine-tuned model itself in ONNX Runtime int8 or fp32)
- baseline: `benchmarks/naive_server.py`, a transformers `pipeline("text-classification")`
  behind FastAPI answering one request at a time, fp32 PyTorch, the same weights

Both are driven by locust (headless, a separate process) with real texts (the vader-tweets
test split) at concurrency 1 and 16 with one text per request, at concurrency 1 with 32
texts per request, and at concurrency 4 with one long text (~300 words: test tweets joined) per
request. Reported: req/s, texts/s, p50/p95/p99, our/baseline ratios, cold start to
ready, resident memory, macro-F1 of each server's answers on the test split, the machine.
Without --model, a transformer is trained like `make run` does (cached under the workdir).
Results: benchmarks/results/serving.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from sentiops.data.prepare import labelled_split
from sentiops.local.processes import Process, free_port, start_process, wait_http
from sentiops.models.modeldir import read_manifest
from sentiops.params import DataConfig, TrainConfig
from sentiops.scoring import macro_f1

HERE = Path(__file__).resolve().parent
#: (concurrent users, texts per request, texts): "long" texts are ~300 words (test tweets
#: joined in order), read whole by both servers (ours in windows, the baseline up to 512 tokens)
SCENARIOS = [(1, 1, "short"), (16, 1, "short"), (1, 32, "short"), (4, 1, "long")]
LONG_WORDS = 300
TARGET_RATIO_C16 = 5.0


def ensure_model(workdir: Path, model: Path | None, con: Console, form: str = "auto") -> Path:
    """The fine-tuned transformer to serve (trained like `make run` when not given), with
    its serving form packaged (a copy under the workdir when `form` asks for another one)."""
    import shutil

    from sentiops.models import serving_form
    from sentiops.training.train import train

    if model is None:
        model = workdir / "serving-model"
        if not (model / "model.json").exists():
            con.print(f"training all-MiniLM-L6-v2 (3 epochs, as make run) into {model}")
            train(
                TrainConfig(
                    data=["vader-tweets"],
                    model_type="transformer",
                    base_model="offline",
                    output=model,
                    track=False,
                )
            )
    current = read_manifest(model).get("serving") or {}
    if form == "student-int8" and "student" not in current:  # package a copy
        copy = workdir / f"serving-model-{form}"
        if (copy / "model.json").exists() and "student" in read_manifest(copy).get("serving", {}):
            return copy
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(model, copy)
        model, current = copy, {}
    if not current:
        cfg = DataConfig(data=["vader-tweets"])
        val, _ = labelled_split(cfg, "validation")
        forms = (
            serving_form.AUTO
            if form == "auto"
            else serving_form.FORMS[serving_form.FORMS.index(form) :]
        )
        train_df, _ = labelled_split(cfg, "train") if "student-int8" in forms else (None, None)
        con.print(f"packaging the serving form ({', '.join(forms)}; validation split)")
        serving_form.package(
            model,
            val.text.tolist(),
            val.label.tolist(),
            forms=forms,
            train_texts=[] if train_df is None else train_df.text.tolist(),
            train_labels=[] if train_df is None else train_df.label.tolist(),
        )
    return model


def long_texts(texts: list[str], words: int = LONG_WORDS) -> list[str]:
    """Texts of about `words` words: `texts` joined in order (a long post is many sentences)."""
    out: list[str] = []
    current: list[str] = []
    count = 0
    for text in texts:
        current.append(text)
        count += len(text.split())
        if count >= words:
            out.append(" ".join(current))
            current, count = [], 0
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, MB."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            pids += [int(c) for c in children]
        except OSError:
            continue
    return total / 1024


def start_server(kind: str, model: Path, port: int, work: Path) -> tuple[Process, float, str]:
    if kind == "ours":
        args = [
            sys.executable,
            "-m",
            "serving",
            "--model_name=sentiment",
            f"--model_dir={model}",
            f"--http_port={port}",
            f"--grpc_port={free_port()}",
        ]
        ready = f"http://127.0.0.1:{port}/v2/models/sentiment/ready"
    else:
        args = [sys.executable, str(HERE / "naive_server.py"), f"--model={model}", f"--port={port}"]
        ready = f"http://127.0.0.1:{port}/ready"
    start = time.perf_counter()
    proc = start_process(kind, args, work, {"PYTHONPATH": str(HERE.parent)})
    wait_http(ready, proc, 300, f"{kind} server ready")
    return proc, time.perf_counter() - start, f"http://127.0.0.1:{port}"


def locust(url: str, users: int, batch: int, seconds: int, texts: Path, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    prefix = work / f"locust-{users}x{batch}"
    env = {**os.environ, "BENCH_TEXTS": str(texts), "BENCH_BATCH": str(batch)}
    locust_bin = Path(sys.executable).with_name("locust")
    cmd = [
        str(locust_bin),
        "-f",
        str(HERE / "locustfile.py"),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--host",
        url,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "ERROR",
    ]
    import subprocess

    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=seconds + 120)
    with open(f"{prefix}_stats.csv") as fh:
        row = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    rps = float(row["Requests/s"])
    return {
        "users": users,
        "batch": batch,
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "req_per_s": rps,
        "texts_per_s": rps * batch,
        "p50_ms": float(row["50%"]),
        "p95_ms": float(row["95%"]),
        "p99_ms": float(row["99%"]),
    }


def quality(url: str, texts: list[str], gold: list[str]) -> float:
    pred: list[str] = []
    with httpx.Client(timeout=120) as client:
        for i in range(0, len(texts), 32):
            r = client.post(
                f"{url}/v1/models/sentiment:predict", json={"instances": texts[i : i + 32]}
            )
            r.raise_for_status()
            pred += [p["label"] for p in r.json()["predictions"]]
    return macro_f1(gold, pred, sorted(set(gold)))


def warm_up(url: str, texts: list[str]) -> None:
    for t in texts[:30]:
        body = json.dumps({"instances": [t]}).encode()
        req = urllib.request.Request(
            f"{url}/v1/models/sentiment:predict", body, {"content-type": "application/json"}
        )
        urllib.request.urlopen(req, timeout=60).read()  # noqa: S310 (loopback)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, help="a transformer model directory")
    ap.add_argument("--workdir", type=Path, default=Path(".sentiops"))
    ap.add_argument("--seconds", type=int, default=20, help="duration of each load scenario")
    ap.add_argument(
        "--form",
        default="student-int8",
        choices=["auto", "student-int8"],
        help="serving form to package (a copy of --model when it has another)",
    )
    ap.add_argument("--results", type=Path, default=HERE / "results")
    args = ap.parse_args()
    con = Console(width=None if sys.stdout.isatty() else 140)
    work = (args.workdir / "bench" / "serving").resolve()
    work.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.workdir.resolve() / "bench", args.model, con, args.form).resolve()
    manifest = read_manifest(model)
    test, _ = labelled_split(DataConfig(data=["vader-tweets"]), "test")
    texts, gold = test.text.tolist(), test.label.tolist()
    files = {"short": work / "texts.json", "long": work / "long-texts.json"}
    files["short"].write_text(json.dumps(texts))
    files["long"].write_text(json.dumps(long_texts(texts)))
    results: dict[str, Any] = {}
    for kind in ("baseline", "ours"):
        con.print(f"[bold]{kind}[/]: starting")
        proc, cold, url = start_server(kind, model, free_port(), work / kind)
        try:
            warm_up(url, texts)
            runs = []
            for users, batch, size in SCENARIOS:
                con.print(
                    f"  {kind}: {users} user(s) x {batch} {size} text(s)/request, {args.seconds}s"
                )
                runs.append(
                    locust(url, users, batch, args.seconds, files[size], work / kind / size)
                )
            results[kind] = {
                "cold_start_s": round(cold, 2),
                "rss_mb": round(rss_mb(proc.proc.pid)),
                "macro_f1": round(quality(url, texts, gold), 4),
                "runs": runs,
            }
        finally:
            proc.stop()
    serving = manifest.get("serving", {})
    record = {
        "model": str(model),
        "model_version": manifest["version"],
        "serving_form": serving.get("form"),
        "machine": machine(),
        "seconds_per_scenario": args.seconds,
        "texts": f"vader-tweets test split ({len(texts)})",
        **results,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "serving.json").write_text(json.dumps(record, indent=2))
    md = markdown(record)
    (args.results / "serving.md").write_text(md)
    con.print(table(record))
    c16 = _ratio(record, 1, "req_per_s")
    verdict = "meets" if c16 >= TARGET_RATIO_C16 else "misses"
    con.print(
        f"throughput at c=16: {c16:.1f}x the baseline ({verdict} the {TARGET_RATIO_C16:.0f}x "
        f"target); results in {args.results / 'serving.md'}"
    )


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}"


def _ratio(record: dict, i: int, key: str) -> float:
    base = record["baseline"]["runs"][i][key]
    return record["ours"]["runs"][i][key] / base if base else float("inf")


ROWS = [
    ("req/s", "req_per_s", "{:.1f}"),
    ("texts/s", "texts_per_s", "{:.1f}"),
    ("p50 ms", "p50_ms", "{:.0f}"),
    ("p95 ms", "p95_ms", "{:.0f}"),
    ("p99 ms", "p99_ms", "{:.0f}"),
    ("failures", "failures", "{}"),
]


def _rows(record: dict) -> list[list[str]]:
    out = []
    for i, (users, batch, size) in enumerate(SCENARIOS):
        name = f"c={users}, {batch}/req" + (f", {LONG_WORDS} words" if size == "long" else "")
        for label, key, fmt in ROWS:
            ours, base = record["ours"]["runs"][i][key], record["baseline"]["runs"][i][key]
            ratio = f"{ours / base:.2f}x" if key != "failures" and base else ""
            out.append([name, label, fmt.format(base), fmt.format(ours), ratio])
    for label, key in (
        ("cold start s", "cold_start_s"),
        ("resident MB", "rss_mb"),
        ("macro-F1 (test)", "macro_f1"),
    ):
        out.append(["", label, str(record["baseline"][key]), str(record["ours"][key]), ""])
    return out


def table(record: dict) -> Table:
    t = Table(
        title=f"serving: ours ({record['serving_form']}) vs transformers pipeline + "
        f"FastAPI ({record['machine']})"
    )
    for col in ("scenario", "metric", "baseline", "ours", "ours/baseline"):
        t.add_column(col, justify="left" if col in ("scenario", "metric") else "right")
    for row in _rows(record):
        t.add_row(*row)
    return t


def markdown(record: dict) -> str:
    lines = [
        f"Machine: {record['machine']}; model version {record['model_version']} served as "
        f"`{record['serving_form']}`; {record['texts']}; {record['seconds_per_scenario']} s "
        "per scenario (locust, headless).",
        "",
        "| scenario | metric | baseline | ours | ours/baseline |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(record)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
