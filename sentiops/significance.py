"""Statistics of the gate and of the serving form's check: a paired bootstrap of the
macro-F1 difference, and group weights.

Both models predict the same held-out test set. The macro-F1 difference (challenger minus
champion) is tested with a paired bootstrap: each resample draws the same examples for both
models, so the spread reflects the test set, not the models' independent noise.

Groups (`balance_sources`): a retraining run's test set holds the original test rows plus a
held-out share of the labels collected from live traffic, often a few dozen next to
thousands. Counted row by row, a model that is much better on today's traffic and as good on
the original data looks no better. With groups, each group weighs the same: every metric is
computed with row weights n / (k * n_group), and the bootstrap resamples within each group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sentiops.scoring import LABELS, macro_f1_weighted, one_hot, scored_labels


@dataclass
class Bootstrap:
    delta: float
    confidence: float
    lower: float
    ci_low: float
    ci_high: float
    n_resamples: int
    seed: int


def paired_bootstrap(
    y_true: Sequence[str],
    champion_pred: Sequence[str],
    challenger_pred: Sequence[str],
    n_resamples: int = 2000,
    seed: int = 0,
    min_delta: float = 0.0,
    confidence: float = 0.95,
    groups: Sequence[str] | None = None,
) -> Bootstrap:
    """Bootstrap distribution of macro-F1(challenger) - macro-F1(champion) on shared resamples.

    Classes are those in the truth or either prediction on the full test set
    (`scoring.scored_labels`), so every resample scores both models over the same classes.
    With `groups` (one per row), each group weighs the same (`group_weights`) and each
    resample draws within each group, so every resample keeps the groups' sizes.
    """
    n = len(y_true)
    if n == 0 or len(champion_pred) != n or len(challenger_pred) != n:
        raise ValueError("y_true and both predictions must be non-empty and of equal length")
    labels = scored_labels(LABELS, y_true, champion_pred, challenger_pred)
    truth, a, b = (one_hot(seq, labels) for seq in (y_true, champion_pred, challenger_pred))
    base = np.ones(n) if groups is None else group_weights(groups)
    members = (
        [np.arange(n)]
        if groups is None
        else [np.flatnonzero(np.asarray(groups) == g) for g in dict.fromkeys(groups)]
    )
    full = base[None, :]
    delta = float(macro_f1_weighted(full, truth, b)[0] - macro_f1_weighted(full, truth, a)[0])
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - start)
        w = np.zeros((m, n))
        for idx in members:
            k = len(idx)
            w[:, idx] = rng.multinomial(k, np.full(k, 1.0 / k), size=m)
        w *= base
        deltas[start : start + m] = macro_f1_weighted(w, truth, b) - macro_f1_weighted(w, truth, a)
    return Bootstrap(
        delta=delta,
        confidence=float(np.mean(deltas > min_delta + 1e-12)),
        lower=float(np.quantile(deltas, 1.0 - confidence)),
        ci_low=float(np.quantile(deltas, 0.025)),
        ci_high=float(np.quantile(deltas, 0.975)),
        n_resamples=n_resamples,
        seed=seed,
    )


def group_weights(groups: Sequence[str]) -> np.ndarray:
    """Row weights n / (k * n_group): each of the k groups weighs the same, the total stays n."""
    values = np.asarray(list(groups), dtype=object)
    names, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return np.asarray(len(values) / (len(names) * counts[inverse]), dtype=np.float64)
