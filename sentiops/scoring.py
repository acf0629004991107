"""Classification metrics: the one implementation of macro-F1, per-class scores, the confusion
matrix and probabilities -> labels. Evaluation, the gate (and its paired bootstrap) and
training's early stopping all score through here, so they can never disagree about a model.

The label set is explicit. `scored_labels()` picks it the same way everywhere: the declared
labels (a model's, in its order) that occur in the truth or in any prediction being compared,
then any undeclared label that occurs, sorted. A class nobody predicts and nobody has is left
out; a class that occurs but one side never predicts scores F1 = 0 for that side.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

#: The classes of the sentiment task, in the order they are reported and averaged.
LABELS: tuple[str, ...] = ("negative", "neutral", "positive")


def scored_labels(declared: Iterable[str], *sequences: Iterable[str]) -> list[str]:
    """The classes to average over (see the module docstring)."""
    present: set[str] = set()
    for seq in sequences:
        present.update(seq)
    ordered = [lab for lab in dict.fromkeys(declared) if lab in present]
    return ordered + sorted(present - set(ordered))


def labels_from_proba(proba: np.ndarray, labels: Sequence[str]) -> list[str]:
    """The most probable label of each row (ties: the first in label order)."""
    return [labels[i] for i in np.asarray(proba).argmax(axis=1)]


def one_hot(values: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Rows of indicators over `labels` (a value outside `labels` is an all-zero row)."""
    index = {lab: i for i, lab in enumerate(labels)}
    out = np.zeros((len(values), len(labels)), dtype=np.float64)
    for row, value in enumerate(values):
        col = index.get(value)
        if col is not None:
            out[row, col] = 1.0
    return out


def f1_per_class(weights: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """F1 of each class under example weights (rows of `weights` = resamples):
    F1 = 2TP / (2TP + FP + FN) = 2TP / (|true_k| + |pred_k|); 0 where a class has neither."""
    tp = weights @ (truth * pred)
    denom = weights @ truth + weights @ pred
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def macro_f1_weighted(weights: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Macro-F1 for each row of example weights (the bootstrap's vectorised form)."""
    return np.asarray(f1_per_class(weights, truth, pred).mean(axis=-1))


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> float:
    """Unweighted mean of the per-class F1 over `labels`."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not labels or not len(y_true):
        return 0.0
    ones = np.ones((1, len(y_true)))
    return float(macro_f1_weighted(ones, one_hot(y_true, labels), one_hot(y_pred, labels))[0])


def classification_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: Sequence[str],
    sample_weight: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """n, accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix
    (rows = true, columns = predicted) over `labels`. With `sample_weight`, accuracy and the
    per-class scores are weighted; `n`, `support` and the matrix stay counts of rows."""
    y_true, y_pred = list(y_true), list(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    n = len(y_true)
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{n} rows but {w.size} sample weights")
    labs = list(labels)
    truth, pred = one_hot(y_true, labs), one_hot(y_pred, labs)
    matrix = (truth.T @ pred).astype(int)
    weighted = (truth * w[:, None]).T @ pred
    tp = np.diag(weighted).astype(np.float64)
    true_k, pred_k = w @ truth, w @ pred
    precision = np.divide(tp, pred_k, out=np.zeros_like(tp), where=pred_k > 0)
    recall = np.divide(tp, true_k, out=np.zeros_like(tp), where=true_k > 0)
    f1 = f1_per_class(w[None, :], truth, pred)[0] if n else np.zeros(len(labs))
    correct = np.array([t == p for t, p in zip(y_true, y_pred, strict=True)], dtype=np.float64)
    support = truth.sum(axis=0)
    return {
        "n": n,
        "accuracy": float(w @ correct / w.sum()) if n and w.sum() > 0 else 0.0,
        "macro_f1": float(f1.mean()) if len(labs) else 0.0,
        "per_class": {
            lab: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, lab in enumerate(labs)
        },
        "confusion_matrix": {"labels": labs, "matrix": matrix.tolist()},
    }


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default); (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
