"""What the loop tells: its chapters (what happened, how long it took), live accuracy by model
version and domain from the random evaluation sample, the accuracy estimated without labels
right after the shift beside the realized one once labels come, and the verdict a person needs
to believe the loop. `sentiops loop` prints it (`sentiops.cli.local`); `story.json` keeps it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sentiops.estimation.performance import labelled_error
from sentiops.feedback.labels import random_sample, read_labels
from sentiops.feedback.live import live_metrics


@dataclass
class Chapter:
    title: str
    seconds: float
    facts: dict[str, Any]


@dataclass
class Story:
    chapters: list[Chapter] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, title: str, started: float, **facts: Any) -> Chapter:
        ch = Chapter(title, round(time.monotonic() - started, 1), facts)
        self.chapters.append(ch)
        return ch

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(time.monotonic() - self.started, 1),
            "chapters": [c.__dict__ for c in self.chapters],
        }


def live_accuracy_by_domain(store: str, domain: dict[str, str]) -> list[dict[str, Any]]:
    """Accuracy (95 % Wilson interval) and macro-F1 of each model version on each domain,
    from the stored labels of the random evaluation sample only (`sentiops.feedback`)."""
    df = read_labels(store)  # live_metrics keeps the random sample only
    if df.empty:
        return []
    df = df.assign(domain=[domain.get(t, "other") for t in df["text"]])
    rows = []
    for dom, g in df.groupby("domain"):
        for version, m in live_metrics(g).items():
            rows.append(
                {
                    "model_version": version,
                    "domain": str(dom),
                    "labels": int(m["labels"]),
                    "correct": int(m["correct"]),
                    "accuracy": round(m["accuracy"], 3),
                    "accuracy_95": [round(m["accuracy_low"], 3), round(m["accuracy_high"], 3)],
                    "macro_f1": round(m["macro_f1"], 3),
                    "sample": "random",
                }
            )
    return sorted(rows, key=lambda r: (r["model_version"], r["domain"]))


def verdict(
    before: dict[str, Any] | None, after: dict[str, Any] | None, domain: str, alpha: float = 0.05
) -> str:
    """What a person needs to believe the loop: live accuracy on the new domain before and
    after, from the random evaluation sample, with 95 % intervals, sample sizes and the
    one-sided test that it rose (at the canary judge's `alpha`)."""

    def one(r: dict[str, Any]) -> str:
        low, high = r["accuracy_95"]
        return (
            f"v{r['model_version']} {r['accuracy']:.3f} (95 % {low:.3f}-{high:.3f}, "
            f"n={r['labels']})"
        )

    if not before or not after:
        return f"live accuracy on {domain}: too few labels of the random sample to compare"
    if before["model_version"] == after["model_version"]:
        return f"live accuracy on {domain}: {one(before)}; the model did not change"
    p = improvement_p(before, after)
    word = "better" if p < alpha else "not shown better"
    return (
        f"live accuracy on {domain} (random sample): {one(before)} -> {one(after)}: {word} "
        f"(one-sided Fisher p = {p:.2g}, alpha {alpha})"
    )


def improvement_p(before: dict[str, Any], after: dict[str, Any]) -> float:
    """One-sided Fisher exact p-value that `after`'s live accuracy is higher than `before`'s
    (rows of `live_accuracy_by_domain`: correct answers out of labels)."""
    from scipy.stats import fisher_exact

    table = [
        [after["correct"], after["labels"] - after["correct"]],
        [before["correct"], before["labels"] - before["correct"]],
    ]
    return float(fisher_exact(table, alternative="greater")[1])


def first_window_after(
    status: dict[str, Any], version: str, since: datetime
) -> dict[str, Any] | None:
    """Of the windows of `version` the drift sidecar tested (its `/status`), the first whose
    predictions were all made at or after `since` (the new traffic alone), with its estimate."""
    versions = status.get("versions") or {}
    for record in (versions.get(version) or {}).get("recent") or []:
        first = record.get("first")
        if first and record.get("estimate") and datetime.fromisoformat(first) >= since:
            return dict(record)
    return None


def labelled_estimate(
    store: str, domain: dict[str, str], version: str, dataset: str
) -> dict[str, float] | None:
    """On the labelled random sample of `version`'s answers on `dataset`: the accuracy the
    served probabilities estimated (their mean top probability) beside the realized one, and
    the band their difference stays in if the calibration held (`labelled_error`)."""
    df = random_sample(read_labels(store))
    if df.empty or "confidence" not in df.columns:
        return None
    df = df[(df["model_version"] == version) & (df["text"].map(domain.get) == dataset)]
    return labelled_error(df["confidence"].astype(float), df["label"] == df["predicted_label"])


def estimate_line(
    version: str,
    dataset: str,
    window: dict[str, Any] | None,
    labelled: dict[str, float] | None = None,
) -> str:
    """The estimate in words: right after the shift (`window`, before its labels), and beside
    the realized accuracy of the labelled random sample once labels came (`labelled`)."""
    if labelled is not None:
        off = labelled["error"]
        why = (
            "within what the calibration explains"
            if abs(off) <= labelled["expected_within"]
            else "beyond it: the shift changed p(label | text), which no estimate without "
            "labels sees (docs/estimation.md)"
        )
        return (
            f"v{version} on {dataset}: estimated accuracy {labelled['estimated']:.3f} "
            f"(calibrated, no labels) vs realized {labelled['realized']:.3f} on "
            f"{labelled['labels']:.0f} labels of the random sample: {off:+.3f}, "
            f"{why}"
        )
    if window is None:
        return f"v{version} on {dataset}: no window of the new traffic tested yet"
    est = window["estimate"]
    acc, f1 = est["accuracy"], est["macro_f1"]
    ref = est.get("validation_accuracy")
    versus = f" vs {ref:.3f} on its validation rows" if ref is not None else ""
    return (
        f"v{version} on {dataset}, right after the shift, before any label of it: estimated "
        f"accuracy {acc['value']:.3f} (95 % {acc['low']:.3f}-{acc['high']:.3f}, window of "
        f"{est['n']}){versus}; macro-F1 {f1['value']:.3f}"
    )
