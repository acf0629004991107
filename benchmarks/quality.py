"""Quality benchmark: in-domain and cross-domain macro-F1 of the TF-IDF baseline and the
fine-tuned transformer, beside the VADER lexicon, on the four labelled domains the project
ships (Hutto & Gilbert, ICWSM 2014, in the `vaderSentiment` sdist): tweets, movie-review
snippets, product-review snippets (Amazon) and newspaper editorial snippets (NYT).

    make bench-quality                       # every run not cached yet (~1.5 h on 2 cores)
    python benchmarks/quality.py --only 'transformer · all but amazon'   # one run
    python benchmarks/quality.py --table     # the tables from the cached runs only

Every domain is split as the platform splits it (`sentiops.data.prepare`: validated, stratified
70/10/20, seed 42: the tweets test split is the same 840 tweets as before). A run trains on the
train splits of some domains (at most `--cap` rows of each, so no domain drowns the others;
early stopping on their validation splits) and is scored on the test split of every domain.
Out of domain = a domain the run never trained on ("leave one domain out": train on three,
test on the fourth). The ideas are measured the same way: soft targets from the raters' mean
scores (`soft_width`), more domains, and stacking the transformer with the VADER lexicon.

**Long texts** (`benchmarks/longtext.py`): reviews of 50-300 words built from each domain's
test split (one label throughout, or a final verdict after other labels), scored beside the
same snippets scored one by one and beside VADER; the transformer reads them whole, in windows
(`sentiops.models.windows`), and every window pooling is scored (the one a model serves is
chosen on long texts built from the validation splits).

Each run is cached in benchmarks/results/quality-runs/ (scores + probabilities), so the
benchmark resumes after a stop; results go to benchmarks/results/quality.json + .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
import longtext  # noqa: E402 - the benchmark's own module beside it

from sentiops.data.datasets import LABEL, LABELS, SCORE, TEXT, fetch_builtin
from sentiops.data.prepare import prepare
from sentiops.models import fit_model, lexicon
from sentiops.params import DataConfig
from sentiops.scoring import labels_from_proba, macro_f1

DOMAINS = ("tweets", "movies", "amazon", "nyt")
NAMES = {
    "tweets": "tweets",
    "movies": "movie reviews",
    "amazon": "product reviews",
    "nyt": "editorials",
}
TARGET_IN_DOMAIN = 0.80
RESULTS = Path(__file__).parent / "results"
TRANSFORMER = {"base_model": "offline", "epochs": 2, "lr": 1e-4, "max_length": 64}


@dataclass
class Run:
    name: str
    model_type: str
    domains: list[str]
    params: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return self.name.replace(" · ", "--").replace(" ", "-")


def _others(d: str) -> list[str]:
    return [x for x in DOMAINS if x != d]


RUNS: list[Run] = [
    Run("tfidf · tweets", "tfidf-logreg", ["tweets"]),
    Run("transformer · tweets", "transformer", ["tweets"], TRANSFORMER | {"soft_width": 0.0}),
    *[Run(f"tfidf · all but {d}", "tfidf-logreg", _others(d)) for d in DOMAINS],
    *[
        Run(
            f"transformer · all but {d}",
            "transformer",
            _others(d),
            TRANSFORMER | {"soft_width": 0.0},
        )
        for d in DOMAINS
    ],
    *[
        Run(
            f"transformer soft · all but {d}",
            "transformer",
            _others(d),
            TRANSFORMER | {"soft_width": 0.35},
        )
        for d in DOMAINS
    ],
    # long texts: joined same-label snippets too (`windows.joined`): windows of several sentences
    Run(
        "transformer joined · all but movies",
        "transformer",
        _others("movies"),
        TRANSFORMER | {"soft_width": 0.0, "joined_share": 0.3},
    ),
    # in domain: longer training at a lower rate on all the tweets
    Run(
        "transformer 4 epochs · tweets",
        "transformer",
        ["tweets"],
        TRANSFORMER | {"soft_width": 0.0, "epochs": 4, "lr": 5e-5},
    ),
]


def load_domains() -> dict[str, dict[str, pd.DataFrame]]:
    """Each built-in domain's train / validation / test split, with the raters' mean score."""
    out = {}
    for d in DOMAINS:
        parts = prepare(DataConfig(data=[f"vader-{d}"])).splits
        if any(SCORE not in p.columns for p in parts.values()):  # an older snapshot
            raw = fetch_builtin(f"vader-{d}")
            score = dict(zip(raw[TEXT].str.strip(), raw["score"], strict=False))
            parts = {k: p.assign(**{SCORE: p[TEXT].map(score)}) for k, p in parts.items()}
        out[d] = parts
    return out


def _cap(df: pd.DataFrame, n: int) -> pd.DataFrame:
    return df if len(df) <= n else df.sample(n, random_state=42)


def train_and_score(
    run: Run, data: dict[str, dict[str, pd.DataFrame]], cap: int, models: Path | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if len(run.domains) == 1:  # one domain: all of it (the in-domain runs, as before)
        cap = 10**9
    train = pd.concat([_cap(data[d]["train"], cap) for d in run.domains])
    train = train.sample(frac=1.0, random_state=42)
    val = pd.concat([_cap(data[d]["validation"], max(1, cap // 7)) for d in run.domains])
    start = time.perf_counter()
    model = fit_model(
        run.model_type,
        train[TEXT].tolist(),
        train[LABEL].tolist(),
        run.params,
        val_texts=val[TEXT].tolist(),
        val_labels=val[LABEL].tolist(),
        label_set=list(LABELS),
        scores=train[SCORE].tolist(),
        progress=sys.stderr.isatty(),
    )
    seconds = time.perf_counter() - start
    if models is not None:  # kept for later experiments (benchmarks/student.py)
        from sentiops.models import modeldir

        modeldir.write(
            models / run.key(),
            model.save,
            {
                "model_type": run.model_type,
                "labels": list(model.labels),
                "params": {**run.params, "max_length": run.params.get("max_length", 64)},
                "dataset": {"source": [f"vader-{d}" for d in run.domains]},
            },
        )
    probs, f1 = {}, {}
    for d in DOMAINS:
        for part in ("validation", "test"):
            p = np.asarray(model.predict_proba(data[d][part][TEXT].tolist()))
            probs[f"{d}_{part}"] = p
        test = data[d]["test"]
        f1[d] = macro_f1(
            test[LABEL].tolist(), labels_from_proba(probs[f"{d}_test"], model.labels), list(LABELS)
        )
    record = {
        "name": run.name,
        "model_type": run.model_type,
        "domains": run.domains,
        "params": run.params,
        "train_rows": len(train),
        "train_seconds": round(seconds),
        "macro_f1": f1,
        "long": long_scores(model, data),
    }
    return record, probs


LONG_DOMAINS = ("movies", "amazon", "nyt")


def long_sets(data: dict[str, dict[str, pd.DataFrame]], part: str) -> dict[str, longtext.LongSet]:
    return {d: longtext.build(data[d][part], n=150, seed=7) for d in LONG_DOMAINS}


def _f1(gold: list[str], pred: list[str]) -> float:
    """Macro-F1 over the classes of `gold` (a verdict set has no neutral text: predicting
    neutral is an error, not a class of its own)."""
    return macro_f1(gold, pred, [lab for lab in LABELS if lab in set(gold)])


def long_scores(model: Any, data: dict[str, dict[str, pd.DataFrame]]) -> dict[str, Any]:
    """Macro-F1 on long texts per domain: every window pooling (a transformer), the snippets
    of the same texts scored one by one, and on validation texts (to choose the pooling)."""
    from sentiops.models import windows

    out: dict[str, Any] = {}
    for part in ("validation", "test"):
        for d, ls in long_sets(data, part).items():
            split = data[d][part]
            kinds = np.array(ls.kinds)
            row: dict[str, Any] = {"n": len(ls.texts), "median_words": float(np.median(ls.words()))}
            if hasattr(model, "windows"):
                win = model.windows(ls.texts)
                logits = model.window_logits(win.input_ids, session=model.session)
                row["windows_per_text"] = round(len(win.owner) / len(ls.texts), 2)
                poolings = {how: windows.pool(logits, win, how) for how in windows.POOLINGS}
                # what a truncating model read: each text's first window only
                first = np.r_[True, win.owner[1:] != win.owner[:-1]]
                poolings["first window"] = logits[first]
            else:
                poolings = {"whole text": np.log(np.clip(model.predict_proba(ls.texts), 1e-9, 1))}
            for how, lg in poolings.items():
                pred = np.array(model.labels)[lg.argmax(axis=1)]
                row[how] = {"all": _f1(ls.labels, list(pred))} | {
                    k: _f1(list(np.array(ls.labels)[kinds == k]), list(pred[kinds == k]))
                    for k in longtext.KINDS
                }
            rows = sorted({r for rs in ls.snippets for r in rs})
            snip = split.iloc[rows]
            row["snippets one by one"] = _f1(
                snip[LABEL].tolist(),
                labels_from_proba(model.predict_proba(snip[TEXT].tolist()), model.labels),
            )
            out[f"{d}_{part}"] = row
    return out


def long_table(records: dict[str, dict[str, Any]], vader: dict[str, dict[str, float]]) -> list[str]:
    """Markdown: per run with long-text scores and domain, macro-F1 on the long test texts
    (all / same / verdict) for VADER, the first window only and every pooling, beside the
    snippets one by one."""
    from sentiops.models import windows

    md = [
        "| run | domain | VADER | first window | "
        + " | ".join(windows.POOLINGS)
        + " | whole text (TF-IDF) | snippets one by one |",
        "|---|---|" + "---|" * (len(windows.POOLINGS) + 4),
    ]
    for name, r in records.items():
        for d in LONG_DOMAINS:
            row = (r.get("long") or {}).get(f"{d}_test")
            if not row:
                continue
            cells = [
                _fmt(row[k]["all"]) if k in row else "-"
                for k in ("first window", *windows.POOLINGS, "whole text")
            ]
            md.append(
                f"| {name} | {NAMES[d]} | {_fmt(vader[d]['all'])} | "
                + " | ".join(cells)
                + f" | {_fmt(row['snippets one by one'])} |"
            )
    return md


def vader_long(data: dict[str, dict[str, pd.DataFrame]]) -> dict[str, dict[str, float]]:
    out = {}
    for d, ls in long_sets(data, "test").items():
        pred, kinds = np.array(lexicon.labels(ls.texts)), np.array(ls.kinds)
        out[d] = {"all": _f1(ls.labels, list(pred))} | {
            k: _f1(list(np.array(ls.labels)[kinds == k]), list(pred[kinds == k]))
            for k in longtext.KINDS
        }
    return out


def vader_scores(data: dict[str, dict[str, pd.DataFrame]]) -> dict[str, float]:
    return {
        d: macro_f1(
            data[d]["test"][LABEL].tolist(), lexicon.labels(data[d]["test"][TEXT]), list(LABELS)
        )
        for d in DOMAINS
    }


def stacked(
    run: Run, probs: dict[str, np.ndarray], data: dict[str, dict[str, pd.DataFrame]]
) -> dict[str, float]:
    """The idea "ensemble with the lexicon": a logistic regression over the transformer's
    log-probabilities and VADER's four scores, fitted on the run's validation splits."""
    from sklearn.linear_model import LogisticRegression

    def features(d: str, part: str) -> np.ndarray:
        p = np.log(np.clip(probs[f"{d}_{part}"], 1e-6, 1.0))
        return np.hstack([p, lexicon.features(data[d][part][TEXT].tolist())])

    x = np.vstack([features(d, "validation") for d in run.domains])
    y = np.concatenate([data[d]["validation"][LABEL].to_numpy() for d in run.domains])
    clf = LogisticRegression(max_iter=2000, class_weight="balanced").fit(x, y)
    return {
        d: macro_f1(
            data[d]["test"][LABEL].tolist(), list(clf.predict(features(d, "test"))), list(LABELS)
        )
        for d in DOMAINS
    }


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def tables(
    records: dict[str, dict[str, Any]], vader: dict[str, float], stack: dict[str, dict[str, float]]
) -> tuple[list[str], Table]:
    """Markdown lines and a rich table: per held-out domain, every model that never saw it."""

    def f1(name: str, d: str) -> float | None:
        r = records.get(name)
        return None if r is None else float(r["macro_f1"][d])

    header = [
        "held-out domain (test split, n)",
        "VADER lexicon",
        "tfidf · tweets",
        "transformer · tweets",
        "tfidf · other 3",
        "transformer · other 3",
        "transformer soft · other 3",
        "transformer · other 3 + VADER stacked",
    ]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table = Table(title="out of domain: macro-F1 on a domain the model never trained on")
    for h in header:
        table.add_column(h, justify="left" if h.startswith("held") else "right")
    for d in DOMAINS:
        cells = [
            _fmt(vader[d]),
            _fmt(f1("tfidf · tweets", d)) if d != "tweets" else "(in domain)",
            _fmt(f1("transformer · tweets", d)) if d != "tweets" else "(in domain)",
            _fmt(f1(f"tfidf · all but {d}", d)),
            _fmt(f1(f"transformer · all but {d}", d)),
            _fmt(f1(f"transformer soft · all but {d}", d)),
            _fmt(stack.get(f"transformer · all but {d}", {}).get(d)),
        ]
        row = [f"{NAMES[d]} ({records_n(d)})", *cells]
        md.append("| " + " | ".join(row) + " |")
        table.add_row(*row)
    return md, table


_N: dict[str, int] = {}


def records_n(d: str) -> int:
    return _N.get(d, 0)


def in_domain(
    records: dict[str, dict[str, Any]], vader: dict[str, float], stack: dict[str, dict[str, float]]
) -> list[str]:
    """The tweets test split (840, the same split as before) for every run that trained on
    tweets."""
    md = ["| model (trained on) | tweets test macro-F1 |", "|---|---|"]
    md.append(f"| VADER lexicon (no training) | {vader['tweets']:.3f} |")
    for name, r in records.items():
        if "tweets" in r["domains"]:
            md.append(f"| {name} ({', '.join(r['domains'])}) | {r['macro_f1']['tweets']:.3f} |")
            if name in stack:
                md.append(f"| {name} + VADER stacked | {stack[name]['tweets']:.3f} |")
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path(".sentiops"))
    ap.add_argument(
        "--cap",
        type=int,
        default=2500,
        help="training rows per domain at most (runs on several domains)",
    )
    ap.add_argument("--only", action="append", default=[], help="run only these (repeatable)")
    ap.add_argument("--table", action="store_true", help="no training: tables from the cache")
    ap.add_argument("--fresh", action="store_true", help="ignore cached runs")
    ap.add_argument(
        "--rescore-long",
        action="store_true",
        help="score the long texts again with the models kept in "
        "<workdir>/bench-models (no training)",
    )
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    os.environ.setdefault("SENTIOPS_HOME", str(args.workdir))
    con = Console(width=None if sys.stdout.isatty() else 160)
    cache = args.results / "quality-runs"
    cache.mkdir(parents=True, exist_ok=True)
    data = load_domains()
    _N.update({d: len(data[d]["test"]) for d in DOMAINS})
    start = time.perf_counter()
    todo = [r for r in RUNS if not args.only or r.name in args.only]
    records: dict[str, dict[str, Any]] = {}
    probs: dict[str, dict[str, np.ndarray]] = {}
    for i, run in enumerate(RUNS):
        path = cache / f"{run.key()}.json"
        if path.exists() and not args.fresh:
            records[run.name] = json.loads(path.read_text())
            kept = args.workdir / "bench-models" / run.key()
            if args.rescore_long and kept.exists():
                from sentiops.models import load_model

                con.print(f"{run.name}: scoring long texts with {kept}")
                records[run.name]["long"] = long_scores(load_model(kept, verify=False).model, data)
                path.write_text(json.dumps(records[run.name], indent=2))
            npz = path.with_suffix(".npz")
            if npz.exists():
                probs[run.name] = dict(np.load(npz))
            continue
        if args.table or run not in todo:
            continue
        con.print(f"[{i + 1}/{len(RUNS)}] {run.name}: training on {', '.join(run.domains)}")
        record, p = train_and_score(run, data, args.cap, args.workdir / "bench-models")
        path.write_text(json.dumps(record, indent=2))
        np.savez_compressed(path.with_suffix(".npz"), **p)
        records[run.name], probs[run.name] = record, p
        con.print(
            "  macro-F1 "
            + ", ".join(f"{d} {v:.3f}" for d, v in record["macro_f1"].items())
            + f" ({record['train_seconds']} s)"
        )
    vader = vader_scores(data)
    stack = {
        name: stacked(next(r for r in RUNS if r.name == name), p, data)
        for name, p in probs.items()
        if name.startswith("transformer")
    }
    md, table = tables(records, vader, stack)
    con.print(table)
    inside = in_domain(records, vader, stack)
    for line in inside:
        con.print(line, highlight=False)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "quality.json").write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "cap_per_domain": args.cap,
                "transformer": TRANSFORMER,
                "test_rows": dict(_N),
                "vader": vader,
                "runs": records,
                "stacked_with_vader": stack,
                "seconds_this_call": round(time.perf_counter() - start),
            },
            indent=2,
        )
    )
    long_md = long_table(records, vader_long(data))
    (args.results / "quality.md").write_text(
        "Out of domain (macro-F1 on the test split of a domain the model never trained on):\n\n"
        + "\n".join(md)
        + "\n\nIn domain (the tweets test split, n = 840):\n\n"
        + "\n".join(inside)
        + "\n\nLong texts (50-300 words, built from each domain's test "
        "split; macro-F1 over all of them):\n\n" + "\n".join(long_md) + "\n"
    )
    best = max(
        (r["macro_f1"]["tweets"] for r in records.values() if "tweets" in r["domains"]), default=0.0
    )
    verdict = "meets" if best >= TARGET_IN_DOMAIN else "misses"
    con.print(
        f"best in-domain tweets macro-F1 {best:.3f} {verdict} the target "
        f"{TARGET_IN_DOMAIN:.2f}; results in {args.results}/quality.md"
    )


if __name__ == "__main__":
    main()
