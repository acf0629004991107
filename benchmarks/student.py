"""The distilled student against its teacher: quality on every domain's test split and on long
texts, the time distillation takes, and the serving form packaging chooses.

    python benchmarks/student.py --teacher .sentiops/bench-models/transformer--all-but-movies

The teacher is a model `make bench-quality` kept (`<workdir>/bench-models/<run>`). Its training
domains' train splits are the transfer set (the texts the student learns the teacher's answers
on; `--epochs` passes over them; `--transfer builtin` adds unlabelled texts of every built-in
domain, none of a validation or test split: `sentiops.training.transfer`); the validation
splits decide, as packaging does (`sentiops.models.serving_form`), whether the student is kept.
Results: a table and
benchmarks/results/student.json + .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import quality  # noqa: E402 - the benchmark's own modules beside it

from sentiops.data.datasets import LABEL, TEXT  # noqa: E402
from sentiops.scoring import labels_from_proba  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def score(model: Any, data: dict, pooling: str) -> dict[str, Any]:
    """Test macro-F1 per domain (short) and on the long texts (the given pooling)."""
    from sentiops.models import windows

    tm = model.model
    tm.window_pooling = pooling
    out: dict[str, Any] = {}
    for d in quality.DOMAINS:
        test = data[d]["test"]
        pred = labels_from_proba(model.predict_proba(test[TEXT].tolist()), model.labels)
        out[d] = quality._f1(test[LABEL].tolist(), pred)
    for d, ls in quality.long_sets(data, "test").items():
        win = tm.windows(ls.texts)
        lg = windows.pool(tm.window_logits(win.input_ids, session=tm.session), win, pooling)
        out[f"{d} long"] = quality._f1(ls.labels, list(np.array(model.labels)[lg.argmax(1)]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--pooling", default="mean")
    ap.add_argument(
        "--transfer",
        action="append",
        default=[],
        help="unlabelled transfer texts beside the training texts, as `sentiops train "
        "--transfer` (builtin | live | a dataset); repeat for more",
    )
    ap.add_argument("--transfer-max", type=int, default=6000)
    ap.add_argument("--workdir", type=Path, default=Path(".sentiops"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    os.environ.setdefault("SENTIOPS_HOME", str(args.workdir))
    from sentiops.models import load_model
    from sentiops.models.serving_form import package
    from sentiops.training.transfer import transfer_set

    data = quality.load_domains()
    manifest = json.loads((args.teacher / "model.json").read_text())
    domains = [s.removeprefix("vader-") for s in manifest["dataset"]["source"]]
    train = [t for d in domains for t in data[d]["train"][TEXT].tolist()]
    gold = [y for d in domains for y in data[d]["train"][LABEL].tolist()]
    val = [data[d]["validation"] for d in domains]
    val_texts = [t for v in val for t in v[TEXT].tolist()]
    val_labels = [y for v in val for y in v[LABEL].tolist()]
    held_out = [
        t for d in quality.DOMAINS for s in ("validation", "test") for t in data[d][s][TEXT]
    ]
    transfer = transfer_set(
        train,
        gold,
        sources=args.transfer,
        exclude=held_out,
        trained_on=manifest["dataset"]["source"],
        limit=args.transfer_max,
    )
    rows: dict[str, dict[str, Any]] = {}
    teacher = load_model(args.teacher)
    rows["teacher (fp32)"] = score(teacher, data, args.pooling)
    work = args.workdir / "bench-student" / args.teacher.name
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(args.teacher, work)
    start = time.perf_counter()
    serving = package(
        work,
        val_texts,
        val_labels,
        forms=("student-int8", "onnx-int8", "onnx-fp32", "pytorch"),
        train_texts=transfer.texts,
        train_labels=transfer.labels,
        distill_params={"epochs": args.epochs, "transfer": transfer.record},
    )
    seconds = time.perf_counter() - start
    student = load_model(work)
    rows[f"served form: {serving['form']}"] = score(student, data, args.pooling)
    record = {
        "teacher": str(args.teacher),
        "domains": domains,
        "transfer": transfer.record,
        "epochs": args.epochs,
        "pooling": args.pooling,
        "package_seconds": round(seconds),
        "serving": serving,
        "scores": rows,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "student.json").write_text(json.dumps(record, indent=2, default=str))
    cols = list(next(iter(rows.values())))
    md = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    md += [f"| {k} | " + " | ".join(f"{v[c]:.3f}" for c in cols) + " |" for k, v in rows.items()]
    (args.results / "student.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(
        f"packaging (distil {args.epochs} epochs on {len(transfer.texts)} texts, export, quantize, "
        f"check): {seconds:.0f} s; chosen {serving['form']}"
    )


if __name__ == "__main__":
    main()
