"""Retraining benchmark: what makes the loop's retrained model better on the new domain
without losing the old ones (issue 15: warm start, the weight of the new labels, epochs).

    make bench-retrain                 # every variant not cached yet (~4 min each on 2 cores)
    python benchmarks/retrain.py --table

The loop's retraining, offline and on the whole test splits (the loop's own gate sees a few
hundred labels; this sees every test row):
- the champion: the transformer `make run` trains first (all-MiniLM-L6-v2, one epoch, lr 1e-4,
  max length 64) on at most 4,500 rows of tweets, product reviews and editorials;
- the traffic shifts to movie-review snippets: 3,000 texts drawn from the movie-review train
  split; annotators label 600 of them at random (the evaluation sample: 480 train, 60
  validation, the rest would test) and the 200 the champion is least sure of (training only);
- each variant retrains on the original rows plus those 680 labels, and is scored on the test
  split of every domain: movie reviews (the new domain, 2,121 rows, never labelled) and the
  three it knew (the gate's guardrail: no group may lose more than 0.05 macro-F1).

Each run is cached in benchmarks/results/retrain-runs/; the table goes to
benchmarks/results/retrain.md + .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "retrain-runs"
ORIGINAL = ["vader-tweets", "vader-amazon", "vader-nyt"]
SHIFTED = "vader-movies"
LABELS = ["negative", "neutral", "positive"]
# the loop's transformer settings (sentiops.local.loop.config.LoopConfig.hyperparameters)
HP = {"epochs": 1, "max_length": 64, "batch_size": 32, "lr": 1e-4, "soft_width": 0.0}
N_ORIGINAL = 4500
#: name -> (start from, original rows, added share of the training weight, epochs)
VARIANTS: dict[str, tuple[str, int, float, int]] = {
    "warm, unweighted": ("champion", N_ORIGINAL, 0.0, 1),
    "warm, added share 0.5 (default)": ("champion", N_ORIGINAL, 0.5, 1),
    "warm, 1,500 original rows, share 0.5, 2 epochs": ("champion", 1500, 0.5, 2),
    "cold (base model), share 0.5": ("offline", N_ORIGINAL, 0.5, 1),
}
console = Console()


def _data(seed: int) -> dict[str, Any]:
    from sentiops.data.datasets import SOURCE
    from sentiops.data.prepare import prepare
    from sentiops.params import DataConfig
    from sentiops.training.train import _subsample

    orig = prepare(DataConfig(data=ORIGINAL, seed=seed)).splits
    movies = prepare(DataConfig(data=[SHIFTED], seed=seed)).splits
    tests = {d: orig["test"][orig["test"][SOURCE] == d] for d in ORIGINAL}
    tests[SHIFTED] = movies["test"]
    pool = movies["train"].sample(3000, random_state=3).reset_index(drop=True)
    train = _subsample(orig["train"], N_ORIGINAL, seed)
    return {"orig": orig, "train": train, "tests": tests, "pool": pool}


def _scores(model: Any, tests: dict[str, pd.DataFrame]) -> dict[str, dict[str, float]]:
    from sentiops.data.datasets import LABEL, TEXT
    from sentiops.scoring import labels_from_proba, macro_f1, scored_labels

    out = {}
    for name, t in tests.items():
        pred = labels_from_proba(model.predict_proba(t[TEXT].tolist()), model.labels)
        gold = t[LABEL].tolist()
        f1 = macro_f1(gold, pred, scored_labels(model.labels, gold, pred))
        out[name] = {"accuracy": float(np.mean(np.array(pred) == np.array(gold))), "macro_f1": f1}
    return out


def _fit(
    texts: list[str],
    labels: list[str],
    val: pd.DataFrame,
    base: str,
    epochs: int,
    weights: list[float] | None,
) -> Any:
    from sentiops.data.datasets import LABEL, TEXT
    from sentiops.models import fit_model

    return fit_model(
        "transformer",
        texts,
        labels,
        {**HP, "epochs": epochs, "base_model": base},
        val_texts=val[TEXT].tolist(),
        val_labels=val[LABEL].tolist(),
        label_set=LABELS,
        sample_weight=weights,
        progress=False,
    )


def _key(name: str) -> str:
    return name.split(" (")[0].replace(", ", "--").replace(" ", "-")


def run(seed: int, only: str | None) -> None:
    from sentiops.data.datasets import LABEL, SOURCE, TEXT
    from sentiops.training.train import row_weights

    RUNS.mkdir(parents=True, exist_ok=True)
    d = _data(seed)
    champion_dir = Path(os.environ.get("SENTIOPS_HOME", ".sentiops")) / f"bench-retrain-c{seed}"
    from sentiops.models.transformer import TransformerModel

    cache = RUNS / f"champion--seed{seed}.json"
    if not (champion_dir / "config.json").exists() or not cache.exists():
        console.print("champion: fine-tuning the base model on the original domains")
        t = time.time()
        model = _fit(
            d["train"][TEXT].tolist(),
            d["train"][LABEL].tolist(),
            d["orig"]["validation"],
            "offline",
            1,
            None,
        )
        model.save(champion_dir)
        cache.write_text(
            json.dumps(
                {
                    "name": "champion",
                    "seed": seed,
                    "seconds": time.time() - t,
                    "scores": _scores(model, d["tests"]),
                }
            )
        )
    champion = TransformerModel.load(champion_dir, {"labels": LABELS, "params": HP})
    # the annotators: 600 at random, then the 200 the champion is least sure of
    rand, rest = d["pool"].iloc[:600], d["pool"].iloc[600:]
    p = np.sort(champion.predict_proba(rest[TEXT].tolist()), axis=1)
    unsure = rest.iloc[np.argsort(p[:, -1] - p[:, -2])[:200]]
    added = pd.concat([rand.iloc[:480], unsure]).assign(**{SOURCE: "live-labels"})
    val = pd.concat([d["orig"]["validation"], rand.iloc[480:540]])
    for name, (base, n_orig, share, epochs) in VARIANTS.items():
        cache = RUNS / f"{_key(name)}--seed{seed}.json"
        if cache.exists() or (only and only != name):
            continue
        from sentiops.training.train import _subsample

        original = _subsample(d["orig"]["train"], n_orig, seed)
        train = pd.concat([original, added]).sample(frac=1.0, random_state=1)
        weights = row_weights(train, share)
        console.print(
            f"{name}: {len(original)} original + {len(added)} new labels "
            f"(weight {max(weights) if weights else 1.0:.2f} each), {epochs} epoch(s)"
        )
        t = time.time()
        start = str(champion_dir) if base == "champion" else base
        model = _fit(train[TEXT].tolist(), train[LABEL].tolist(), val, start, epochs, weights)
        cache.write_text(
            json.dumps(
                {
                    "name": name,
                    "seed": seed,
                    "seconds": time.time() - t,
                    "added_weight": max(weights) if weights else 1.0,
                    "scores": _scores(model, d["tests"]),
                }
            )
        )


def table() -> str:
    runs = [json.loads(f.read_text()) for f in sorted(RUNS.glob("*.json"))]
    order = ["champion", *VARIANTS]
    runs.sort(key=lambda r: (r["seed"], order.index(r["name"]) if r["name"] in order else 99))
    cols = [SHIFTED, *ORIGINAL]
    head = (
        "| run | seed | movie reviews (new) acc / macro-F1 | tweets | product reviews | "
        "editorials | seconds |"
    )
    lines = [head, "|" + "---|" * 7]
    t = Table("run", "seed", *(c.removeprefix("vader-") for c in cols), "s")
    champ: dict[int, dict[str, Any]] = {r["seed"]: r for r in runs if r["name"] == "champion"}
    for r in runs:
        base = champ.get(r["seed"], r)["scores"]
        cells = []
        for c in cols:
            s, b = r["scores"][c], base[c]
            delta = "" if r["name"] == "champion" else f" ({s['accuracy'] - b['accuracy']:+.3f})"
            cells.append(f"{s['accuracy']:.3f}{delta} / {s['macro_f1']:.3f}")
        lines.append(
            f"| {r['name']} | {r['seed']} | " + " | ".join(cells) + f" | {r['seconds']:.0f} |"
        )
        t.add_row(r["name"], str(r["seed"]), *cells, f"{r['seconds']:.0f}")
    console.print(t)
    md = "\n".join(lines)
    header = (
        f"# Retraining benchmark\n\n`python benchmarks/retrain.py` on {platform.node()} "
        f"({os.cpu_count()} cores): accuracy (change against the champion) / macro-F1 on "
        "each domain's whole test split.\n\n"
    )
    (RESULTS / "retrain.md").write_text(header + md + "\n")
    (RESULTS / "retrain.json").write_text(json.dumps(runs, indent=2))
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--only", help="one variant by name")
    ap.add_argument("--table", action="store_true", help="only print the cached runs")
    ap.add_argument("--workdir", default=None, help="SENTIOPS_HOME (default ./.sentiops)")
    args = ap.parse_args()
    if args.workdir:
        os.environ["SENTIOPS_HOME"] = args.workdir
    if not args.table:
        run(args.seed, args.only)
    table()


if __name__ == "__main__":
    main()
