"""What the stored labels say: live accuracy and macro-F1 per model version (from the random
evaluation sample only), and the review of a burst of new labels before retraining on it (the
poisoning guard)."""

from __future__ import annotations

from typing import Any

from sentiops.feedback.labels import random_sample


def live_metrics(labels: Any) -> dict[str, dict[str, float]]:
    """Per model version, from the random evaluation sample of `labels` (COLUMNS): labels
    (the sample size), accuracy and its 95 % Wilson interval, macro-F1."""
    from sentiops.scoring import macro_f1, wilson_interval

    out: dict[str, dict[str, float]] = {}
    for version, g in random_sample(labels).groupby("model_version"):
        gold, pred = g["label"].tolist(), g["predicted_label"].tolist()
        correct = int((g["label"] == g["predicted_label"]).sum())
        low, high = wilson_interval(correct, len(g))
        out[str(version)] = {
            "labels": float(len(g)),
            "correct": float(correct),
            "accuracy": correct / len(g),
            "accuracy_low": low,
            "accuracy_high": high,
            "macro_f1": macro_f1(gold, pred, sorted(set(gold) | set(pred))),
        }
    return out


def review_burst(labels: Any, max_token_share: float = 1.0, max_excess: float = 0.3,
                 alpha: float = 0.001, min_labels: int = 30) -> dict[str, Any]:  # fmt: skip
    """The poisoning guard over a burst of new labels (COLUMNS; other label files count as
    `unauthenticated`): per token, how many labels and how often they disagree with the
    model, and the reasons to hold the burst for review instead of retraining on it:

    - one token gave more than `max_token_share` of the burst (1.0: off; set e.g. 0.9 where
      several annotator teams label);
    - one token's labels disagree with the model far more than every other token's on the
      same traffic: by more than `max_excess`, one-sided Fisher p < `alpha`, each side with at
      least `min_labels` labels.
    """
    from scipy.stats import fisher_exact

    by = labels["labelled_by"].fillna("") if "labelled_by" in labels.columns else None
    names = (by.replace("", "unauthenticated") if by is not None
             else ["unauthenticated"] * len(labels))  # fmt: skip
    disagree = ((labels["label"] != labels["predicted_label"]) if "predicted_label" in
                labels.columns else labels["label"] != labels["label"])  # fmt: skip
    frame = {"token": list(names), "disagree": list(disagree.astype(bool))}
    import pandas as pd

    df = pd.DataFrame(frame)
    tokens = {
        str(name): {"labels": len(g), "disagreement": round(float(g["disagree"].mean()), 4)}
        for name, g in df.groupby("token")
    }
    hold: list[str] = []
    total = len(df)
    for name, t in tokens.items():
        share = t["labels"] / total if total else 0.0
        if share > max_token_share:
            hold.append(f"{share:.0%} of the {total} new labels come from one token ({name}); "
                        f"the limit is {max_token_share:.0%}")  # fmt: skip
        rest = df[df["token"] != name]
        if t["labels"] < min_labels or len(rest) < min_labels:
            continue
        mine = df[df["token"] == name]
        a, b = int(mine["disagree"].sum()), int(rest["disagree"].sum())
        excess = a / len(mine) - b / len(rest)
        p = float(fisher_exact([[a, len(mine) - a], [b, len(rest) - b]],
                               alternative="greater").pvalue)  # fmt: skip
        if excess > max_excess and p < alpha:
            hold.append(f"the labels of token {name} disagree with the model {a / len(mine):.0%} "
                        f"of the time, the others' {b / len(rest):.0%} (p={p:.2g})")  # fmt: skip
    return {"tokens": tokens, "hold": hold}
