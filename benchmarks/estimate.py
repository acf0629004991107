"""Estimated vs realized performance: how far label-free estimation (CBPE on calibrated
probabilities, `sentiops.estimation`) is from the truth, in domain and under the loop's shifts.

    make bench-estimate       # builds .venv-bench-nannyml, then this (~6 min on 2 cores)
    python benchmarks/estimate.py --table

Each model is trained as the platform trains it (`train_on_splits`: the serving form, then the
calibrator fitted on the validation split, `calibration: temperature`) on `vader-tweets` only,
the traffic before the shift: the TF-IDF baseline and the transformer with `make run`'s
settings (all-MiniLM-L6-v2, one epoch, lr 1e-4, max length 64). Every domain is split as the
platform splits it (70/10/20, seed 42). The traffic of a case is one domain's whole test split,
its labels the truth (the random sample at 100 %):

    in domain      tweets (840 test rows), and the same cut into 4 windows of 210
    shift          movie-review snippets (2,121), product reviews (740), editorials (1,023)

For every case, accuracy and macro-F1: realized; estimated from the probabilities as the model
type returns them (uncalibrated confidence averaging); after temperature scaling (what the
platform serves); after vector scaling (per class); and NannyML's CBPE (0.13.1, its own
isotonic calibration on the same validation rows and labels), run in its own environment
(`.venv-bench-nannyml`, never in an image: `--nannyml-python`). Without that interpreter the
NannyML columns are left empty and say why.

Writes benchmarks/results/estimate.md and estimate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
IN_DOMAIN = "vader-tweets"
SHIFTS = {
    "vader-movies": "movie reviews",
    "vader-amazon": "product reviews",
    "vader-nyt": "editorials",
}
WINDOWS = 4
#: the loop's transformer settings (sentiops.local.loop.config.LoopConfig.hyperparameters)
MODELS: dict[str, dict[str, Any]] = {
    "tfidf-logreg": {"model_type": "tfidf-logreg"},
    "transformer": {
        "model_type": "transformer",
        "base_model": "offline",
        "epochs": 1,
        "max_length": 64,
        "batch_size": 32,
        "lr": 1e-4,
    },
    # trained longer: the fine-tuned network's usual over-confidence (calibration lowers it)
    "transformer-3-epochs": {
        "model_type": "transformer",
        "base_model": "offline",
        "epochs": 3,
        "max_length": 64,
        "batch_size": 32,
        "lr": 5e-5,
        "patience": 3,
    },
}
METHODS = ("uncalibrated", "temperature", "vector", "nannyml")
TARGET_IN_DOMAIN = 0.02


def splits(seed: int) -> dict[str, dict[str, Any]]:
    from sentiops.data.prepare import prepare
    from sentiops.params import DataConfig

    return {d: prepare(DataConfig(data=[d], seed=seed)).splits for d in [IN_DOMAIN, *SHIFTS]}


def train(name: str, data: dict[str, Any], workdir: Path, seed: int) -> tuple[Path, float]:
    """The model directory as the platform packages it (cached in `workdir`)."""
    from sentiops.params import TrainConfig
    from sentiops.training.train import train_on_splits

    out = workdir / name
    if (out / "model.json").exists():
        return out, float(json.loads((out / "model.json").read_text()).get("train_seconds", 0))
    cfg = TrainConfig(
        data=[IN_DOMAIN], output=out, track=False, drift_detector=False, seed=seed, **MODELS[name]
    )
    s, dataset = data[IN_DOMAIN], {"source": [IN_DOMAIN], "version": "bench"}
    fitted = train_on_splits(cfg, s["train"], s["validation"], None, dataset, progress=False)
    return out, fitted.seconds


def probabilities(model_dir: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The model's raw probabilities (as its type returns them) and the gold labels of the
    tweets validation split and of every domain's test split."""
    from sentiops.data.datasets import LABEL, TEXT
    from sentiops.models import load_model

    loaded = load_model(model_dir)

    def raw(texts: list[str]) -> np.ndarray:
        return np.concatenate(
            [
                loaded.predict_proba(texts[i : i + 256], calibrated=False)
                for i in range(0, len(texts), 256)
            ]
        )

    sets = {
        "validation": data[IN_DOMAIN]["validation"],
        **{d: data[d]["test"] for d in [IN_DOMAIN, *SHIFTS]},
    }
    start = time.perf_counter()
    out = {
        k: (raw(df[TEXT].astype(str).tolist()), df[LABEL].astype(str).tolist())
        for k, df in sets.items()
    }
    return {"loaded": loaded, "sets": out, "predict_seconds": time.perf_counter() - start}


def cases(sets: dict[str, Any]) -> list[tuple[str, str, np.ndarray, list[str]]]:
    """(name, kind, raw probabilities, gold) of every case: in domain whole and in windows,
    then each shift."""
    p, gold = sets[IN_DOMAIN]
    out = [("tweets (in domain)", "in domain", p, gold)]
    for i, idx in enumerate(np.array_split(np.arange(len(p)), WINDOWS)):
        out.append((f"tweets window {i + 1}/{WINDOWS}", "window", p[idx], [gold[j] for j in idx]))
    for d, name in SHIFTS.items():
        out.append((f"{name} (shift)", "shift", *sets[d]))
    return out


def measure(name: str, got: dict[str, Any], nannyml: dict[str, Any] | None) -> dict[str, Any]:
    """Every case's realized, estimated (each method) and NannyML's accuracy and macro-F1."""
    from sentiops.estimation import calibration, performance

    loaded, sets = got["loaded"], got["sets"]
    labels = loaded.labels
    val_p, val_gold = sets["validation"]
    calibrators = {
        "uncalibrated": None,
        "temperature": loaded.calibrator,
        "vector": calibration.fit(val_p, val_gold, labels, "vector"),
    }
    rows = []
    for case, kind, p, gold in cases(sets):
        row: dict[str, Any] = {"case": case, "kind": kind, "n": len(gold)}
        for method, cal in calibrators.items():
            served = p if cal is None else cal.apply(p)
            est = performance.estimate(served, labels)
            real = performance.realized(served, gold, labels)
            row[method] = {
                "accuracy": round(est.accuracy.value, 4),
                "accuracy_95": [round(est.accuracy.low, 4), round(est.accuracy.high, 4)],
                "macro_f1": round(est.macro_f1.value, 4),
                "macro_f1_95": [round(est.macro_f1.low, 4), round(est.macro_f1.high, 4)],
                "realized_accuracy": round(real["accuracy"], 4),
                "realized_macro_f1": round(real["macro_f1"], 4),
                "accuracy_error": round(est.accuracy.value - real["accuracy"], 4),
                "macro_f1_error": round(est.macro_f1.value - real["macro_f1"], 4),
                "ece": calibration.quality(served, gold, labels)["ece"],
            }
        real = row["uncalibrated"]
        row["realized_accuracy"] = real["realized_accuracy"]
        row["realized_macro_f1"] = real["realized_macro_f1"]
        nml = (nannyml or {}).get(name, {}).get(case)
        if nml:
            acc, f1 = nml["accuracy"], nml["f1"]
            row["nannyml"] = {
                "accuracy": acc,
                "macro_f1": f1,
                "accuracy_error": round(acc - real["realized_accuracy"], 4),
                "macro_f1_error": round(f1 - real["realized_macro_f1"], 4),
            }
        rows.append(row)
    return {
        "model": name,
        "labels": labels,
        "calibration": loaded.manifest.get("calibration"),
        "vector": calibrators["vector"].to_dict() if calibrators["vector"] else None,
        "predict_seconds": round(got["predict_seconds"], 1),
        "cases": rows,
    }


def over_seeds(seeds: list[int], workdir: Path) -> dict[str, Any]:
    """The TF-IDF baseline (seconds to train) over other splits: each seed's own split of every
    domain, training and calibration; per case and method the mean error and mean |error| of
    the accuracy estimate: how much of one split's error is the split's luck."""
    from sentiops.estimation import calibration, performance

    errors: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        data = splits(seed)
        folder, _ = train("tfidf-logreg", data, workdir / f"seed-{seed}", seed)
        got = probabilities(folder, data)
        labels, sets = got["loaded"].labels, got["sets"]
        val_p, val_gold = sets["validation"]
        vector = calibration.fit(val_p, val_gold, labels, "vector")
        maps = {"uncalibrated": None, "temperature": got["loaded"].calibrator, "vector": vector}
        for case, kind, p, gold in cases(sets):
            if kind == "window":
                continue
            for method, cal in maps.items():
                served = p if cal is None else cal.apply(p)
                real = performance.realized(served, gold, labels)["accuracy"]
                est = float(served.max(axis=1).mean())
                errors.setdefault(case, {}).setdefault(method, []).append(est - real)
    return {
        "seeds": seeds,
        "cases": {
            case: {
                m: {
                    "mean_error": round(float(np.mean(v)), 4),
                    "mean_abs_error": round(float(np.mean(np.abs(v))), 4),
                    "errors": [round(x, 4) for x in v],
                }
                for m, v in by.items()
            }
            for case, by in errors.items()
        },
    }


# ------------------------------------------------------------------------------ NannyML
def nannyml_inputs(name: str, got: dict[str, Any], folder: Path) -> Path:
    """Reference (tweets validation) and every case as CSV for the NannyML script."""
    import pandas as pd

    labels = got["loaded"].labels

    def frame(p: np.ndarray, gold: list[str]) -> Any:
        df = pd.DataFrame({f"p_{lab}": p[:, i] for i, lab in enumerate(labels)})
        df["y_pred"] = [labels[i] for i in p.argmax(axis=1)]
        df["y_true"] = gold
        return df

    out = folder / name
    out.mkdir(parents=True, exist_ok=True)
    frame(*got["sets"]["validation"]).to_csv(index=False, path_or_buf=out / "reference.csv")
    index = []
    for i, (case, _, p, gold) in enumerate(cases(got["sets"])):
        frame(p, gold).to_csv(index=False, path_or_buf=out / f"case-{i}.csv")
        index.append({"case": case, "file": f"case-{i}.csv"})
    (out / "cases.json").write_text(json.dumps({"labels": labels, "cases": index}))
    return out


def run_nannyml(python: str, folders: dict[str, Path]) -> tuple[dict[str, Any], str]:
    script = Path(__file__).with_name("estimate_nannyml.py")
    results: dict[str, Any] = {}
    for name, folder in folders.items():
        env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
        proc = subprocess.run(
            [python, str(script), str(folder)], capture_output=True, text=True, env=env, check=False
        )
        if proc.returncode != 0:
            return {}, f"NannyML failed: {proc.stderr.strip().splitlines()[-1:]}"
        results[name] = json.loads((folder / "nannyml.json").read_text())
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('nannyml'))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return results, f"nannyml {version}"


# ------------------------------------------------------------------------------ report
def _cell(m: dict[str, Any] | None, metric: str) -> str:
    if not m:
        return "-"
    return f"{m[metric]:.3f} ({m[metric + '_error']:+.3f})"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Estimated vs realized performance (`make bench-estimate`)",
        "",
        f"{result['when']}, {result['machine']}; models trained on `vader-tweets` only "
        "(70/10/20 split, seed 42), calibrated on its validation split; traffic = one domain's "
        "whole test split, realized = every row's label. Cells: estimate (estimate minus "
        f"realized). NannyML: {result['nannyml']}.",
        "",
    ]
    for model in result["models"]:
        cal = model["calibration"] or {}
        lines += [
            f"## {model['model']}",
            "",
            f"Trained in {model['train_seconds']:.0f} s; calibration: {cal.get('method')} "
            f"T = {cal.get('temperature', 1):.3f}, held-out validation ECE "
            f"{cal.get('before', {}).get('ece', 0):.3f} -> {cal.get('after', {}).get('ece', 0):.3f}"
            f", Brier {cal.get('before', {}).get('brier', 0):.3f} -> "
            f"{cal.get('after', {}).get('brier', 0):.3f}.",
            "",
        ]
        for metric, title in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
            lines += [
                f"| {title}: traffic | n | realized | uncalibrated | temperature (served) "
                "| vector | NannyML CBPE |",
                "|---|---|---|---|---|---|---|",
            ]
            for r in model["cases"]:
                lines.append(
                    f"| {r['case']} | {r['n']} | {r[f'realized_{metric}']:.3f} | "
                    + " | ".join(_cell(r.get(m), metric) for m in METHODS)
                    + " |"
                )
            lines.append("")
        ece = " · ".join(
            f"{r['case']}: {r['uncalibrated']['ece']:.3f} -> {r['temperature']['ece']:.3f}"
            for r in model["cases"]
            if r["kind"] != "window"
        )
        lines += [f"ECE uncalibrated -> temperature: {ece}.", ""]
    seeds = result.get("over_seeds")
    if seeds:
        lines += [
            f"## tfidf-logreg over {len(seeds['seeds'])} splits (seeds "
            f"{', '.join(map(str, seeds['seeds']))})",
            "",
            "Accuracy estimate minus realized: mean (mean |error|) over the seeds' own splits, "
            "training and calibration.",
            "",
            "| traffic | uncalibrated | temperature (served) | vector |",
            "|---|---|---|---|",
        ]
        for case, by in seeds["cases"].items():
            cells = [
                f"{by[m]['mean_error']:+.3f} ({by[m]['mean_abs_error']:.3f})"
                for m in ("uncalibrated", "temperature", "vector")
            ]
            lines.append(f"| {case} | {' | '.join(cells)} |")
        lines.append("")
    lines += [
        "## Targets",
        "",
        *result["verdicts"],
        "",
        f"Whole benchmark: {result['seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def verdicts(models: list[dict[str, Any]]) -> list[str]:
    out = []
    for model in models:
        for r in model["cases"]:
            t, u = r["temperature"], r["uncalibrated"]
            if r["kind"] == "in domain":
                ok = abs(t["accuracy_error"]) <= TARGET_IN_DOMAIN
                out.append(
                    f"- {model['model']}, in domain: accuracy error "
                    f"{t['accuracy_error']:+.3f} (target |error| <= {TARGET_IN_DOMAIN}): "
                    f"{'met' if ok else 'NOT met'}"
                )
            elif r["kind"] == "shift":
                better = abs(t["accuracy_error"]) < abs(u["accuracy_error"])
                out.append(
                    f"- {model['model']}, {r['case']}: accuracy error "
                    f"{t['accuracy_error']:+.3f} calibrated vs {u['accuracy_error']:+.3f} "
                    f"uncalibrated: {'beats' if better else 'does NOT beat'} "
                    f"confidence averaging; macro-F1 error "
                    f"{t['macro_f1_error']:+.3f}"
                )
        windows = [r for r in model["cases"] if r["kind"] == "window"]
        inside = sum(
            w["temperature"]["accuracy_95"][0]
            <= w["realized_accuracy"]
            <= w["temperature"]["accuracy_95"][1]
            for w in windows
        )
        out.append(
            f"- {model['model']}: the realized accuracy of {inside} of {len(windows)} "
            "in-domain windows lies in the estimate's 95 % interval"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path(".sentiops/bench-estimate"))
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--seeds",
        default="42,1,2,3,4,5,6,7",
        help="splits the TF-IDF baseline is also measured over ('' : none)",
    )
    ap.add_argument(
        "--nannyml-python",
        default=None,
        help="the benchmark environment's interpreter (.venv-bench-nannyml)",
    )
    ap.add_argument("--table", action="store_true", help="print the last results and exit")
    args = ap.parse_args()
    if args.table:
        print((RESULTS / "estimate.md").read_text())
        return
    started = time.time()
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = splits(args.seed)
    got: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for name in args.models.split(","):
        t = time.time()
        folder, seconds[name] = train(name, data, args.workdir, args.seed)
        got[name] = probabilities(folder, data)
        print(f"{name}: model ready and scored in {time.time() - t:.0f} s", flush=True)
    nml: dict[str, Any] = {}
    note = "not run (pass --nannyml-python; `make bench-estimate` builds its environment)"
    if args.nannyml_python:
        folders = {n: nannyml_inputs(n, g, args.workdir / "nannyml") for n, g in got.items()}
        nml, note = run_nannyml(args.nannyml_python, folders)
        print(note, flush=True)
    models = []
    for name, g in got.items():
        m = measure(name, g, nml)
        m["train_seconds"] = seconds[name]
        models.append(m)
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {sys.version.split()[0]}",
        "nannyml": note,
        "models": models,
        "verdicts": verdicts(models),
        "over_seeds": over_seeds(seeds, args.workdir) if seeds else None,
    }
    if result["over_seeds"]:
        by = result["over_seeds"]["cases"]["tweets (in domain)"]["temperature"]
        ok = by["mean_abs_error"] <= TARGET_IN_DOMAIN
        result["verdicts"].append(
            f"- tfidf-logreg, in domain over {len(seeds)} splits: mean error "
            f"{by['mean_error']:+.3f}, mean |error| {by['mean_abs_error']:.3f} (target "
            f"<= {TARGET_IN_DOMAIN}): {'met' if ok else 'NOT met'}"
        )
    result["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "estimate.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "estimate.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
