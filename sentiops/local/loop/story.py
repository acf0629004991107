"""What the loop tells: its chapters (what happened, how long it took), live accuracy by model
version and domain from the random evaluation sample, and the verdict a person needs to
believe the loop. `sentiops loop` prints it (`sentiops.cli.local`); `story.json` keeps it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


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
    from sentiops.feedback.labels import read_labels
    from sentiops.feedback.live import live_metrics

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


def verdict(before: dict[str, Any] | None, after: dict[str, Any] | None, domain: str,
            alpha: float = 0.05) -> str:  # fmt: skip
    """What a person needs to believe the loop: live accuracy on the new domain before and
    after, from the random evaluation sample, with 95 % intervals, sample sizes and the
    one-sided test that it rose (at the canary judge's `alpha`)."""

    def one(r: dict[str, Any]) -> str:
        low, high = r["accuracy_95"]
        return (f"v{r['model_version']} {r['accuracy']:.3f} (95 % {low:.3f}-{high:.3f}, "
                f"n={r['labels']})")  # fmt: skip

    if not before or not after:
        return f"live accuracy on {domain}: too few labels of the random sample to compare"
    if before["model_version"] == after["model_version"]:
        return f"live accuracy on {domain}: {one(before)}; the model did not change"
    p = improvement_p(before, after)
    word = "better" if p < alpha else "not shown better"
    return (f"live accuracy on {domain} (random sample): {one(before)} -> {one(after)}: {word} "
            f"(one-sided Fisher p = {p:.2g}, alpha {alpha})")  # fmt: skip


def improvement_p(before: dict[str, Any], after: dict[str, Any]) -> float:
    """One-sided Fisher exact p-value that `after`'s live accuracy is higher than `before`'s
    (rows of `live_accuracy_by_domain`: correct answers out of labels)."""
    from scipy.stats import fisher_exact

    table = [[after["correct"], after["labels"] - after["correct"]],
             [before["correct"], before["labels"] - before["correct"]]]  # fmt: skip
    return float(fisher_exact(table, alternative="greater")[1])
