"""Quality benchmark: macro-F1 of the TF-IDF baseline and the fine-tuned transformer on the
`vader-tweets` held-out test split (seed 42, 70/10/20 stratified split).

    make bench-quality   # or: python benchmarks/quality.py --epochs 3 [--train-extra vader-movies]

Prints a table and writes benchmarks/results/quality.json + .md (the README quotes them).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from rich.console import Console

from sentiops import quickstart

TARGET_TRANSFORMER_F1 = 0.80


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", type=Path, default=Path(".sentiops"))
    ap.add_argument("--dataset", default="vader-tweets")
    ap.add_argument("--base-model", default="offline")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument(
        "--train-extra",
        action="append",
        default=[],
        help="training-only extra data, e.g. vader-movies (repeatable)",
    )
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    con = Console(width=None if sys.stdout.isatty() else 120)
    start = time.perf_counter()
    rows = quickstart.run(
        args.workdir / "bench",
        dataset=args.dataset,
        base_model=args.base_model,
        epochs=args.epochs,
        max_length=args.max_length,
        lr=args.lr,
        train_extra=args.train_extra,
        track=False,
        console=con,
    )
    total = time.perf_counter() - start
    args.results.mkdir(parents=True, exist_ok=True)
    record = {
        "dataset": args.dataset,
        "split": "test (20%, seed 42)",
        "epochs": args.epochs,
        "max_length": args.max_length,
        "lr": args.lr,
        "base_model": args.base_model,
        "train_extra": args.train_extra,
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "total_seconds": round(total, 1),
        "rows": [r.__dict__ for r in rows],
    }
    (args.results / "quality.json").write_text(json.dumps(record, indent=2))
    lines = [
        "| model | macro-F1 | accuracy | ECE | train s | texts/s |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.model} ({r.model_type}) | {r.macro_f1:.3f} | {r.accuracy:.3f} | {r.ece:.3f} "
        f"| {r.train_seconds:.0f} | {r.texts_per_sec:.0f} |"
        for r in rows
    ]
    (args.results / "quality.md").write_text("\n".join(lines) + "\n")
    tf = next(r for r in rows if r.model_type == "transformer")
    verdict = "meets" if tf.macro_f1 >= TARGET_TRANSFORMER_F1 else "misses"
    con.print(
        f"transformer macro-F1 {tf.macro_f1:.3f} {verdict} the target "
        f"{TARGET_TRANSFORMER_F1:.2f}; total {total:.0f}s"
    )


if __name__ == "__main__":
    main()
