"""Performance estimated without labels from calibrated probabilities (confidence-based
performance estimation, CBPE, as NannyML calls it).

If a model's probabilities are calibrated and p(label | text) has not changed, the label of a
row with probabilities p is distributed as p. A window's **expected confusion matrix** is then
the sum over its rows of p placed in the column of the predicted class:

    C[j, k] = sum over rows predicted k of p_j          (true j, predicted k)

and from it: accuracy = trace(C) / n (the mean top probability), recall_j = C[j, j] / sum_k
C[j, k], precision_k = C[k, k] / (rows predicted k), F1_k = 2 C[k, k] / (rows predicted k +
sum_k C[k, .]), macro-F1 their mean.

**Intervals** (`Estimate`): each label drawn from its row's probabilities, the realized metric
of the window's own predictions varies around the estimate; its standard deviation comes from
the delta method over the true-positive and support counts, whose covariances are sums over
the rows (`Tally`): for accuracy exactly sqrt(sum p_top (1 - p_top)) / n. The interval says
where the labels of this window will put the metric if the calibration holds: it is what a
realized figure is compared with. It does not cover the calibration's own error, which is
small in domain and is the whole story under a shift of p(label | text): measured in
`make bench-estimate`, docs/estimation.md.

`Tally` holds the sufficient statistics (sums), so windows and shards add up: the drift sidecar
estimates each window, batch scoring its whole job shard by shard. `from_histogram` estimates
accuracy from a Prometheus confidence histogram (all the canary judge observes); `compare`
(`compare_histograms` on two histograms) weighs two versions' estimates with their
uncertainty, for the judge; `labelled_error` is the estimate's own error on the rows people
labelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sentiops.scoring import classification_metrics, labels_from_proba, scored_labels

#: Two-sided 95 % normal quantile.
Z95 = 1.959964
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"


@dataclass
class Interval:
    """A point estimate, its standard deviation and the interval value +- z sd in [0, 1]."""

    value: float
    sd: float
    low: float
    high: float

    @classmethod
    def of(cls, value: float, var: float, z: float = Z95) -> Interval:
        sd = math.sqrt(max(var, 0.0))
        return cls(float(value), sd, max(0.0, value - z * sd), min(1.0, value + z * sd))

    def to_dict(self, digits: int = 4) -> dict[str, float]:
        return {k: round(getattr(self, k), digits) for k in ("value", "sd", "low", "high")}


@dataclass
class Tally:
    """Sums over a window's probability rows (n x classes, calibrated), enough for every
    estimate and its covariance; two tallies of the same labels add up.

    `predicted[k]`: rows predicted k; `confusion[j, k]`: sum of p_j over rows predicted k;
    `cross[k, j]`: sum of p_k p_j over rows predicted k; `second[j, l]`: sum of p_j p_l."""

    labels: tuple[str, ...]
    n: int = 0
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    cross: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    second: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def __post_init__(self) -> None:
        k = len(self.labels)
        if self.predicted.shape != (k,):
            self.predicted = np.zeros(k)
            self.confusion, self.cross, self.second = (np.zeros((k, k)) for _ in range(3))

    @classmethod
    def of(cls, proba: Any, labels: Sequence[str]) -> Tally:
        """The tally of probability rows in `labels` order."""
        p = np.asarray(proba, dtype=np.float64)
        k = len(labels)
        if p.ndim != 2 or p.shape[1] != k:
            raise ValueError(f"probabilities of shape {p.shape} for {k} labels {list(labels)}")
        pred = np.zeros((len(p), k))
        if len(p):
            pred[np.arange(len(p)), p.argmax(axis=1)] = 1.0
        top = (p * pred).sum(axis=1)  # p of the predicted class
        return cls(
            tuple(labels),
            len(p),
            pred.sum(axis=0),
            p.T @ pred,
            (pred * top[:, None]).T @ p,
            p.T @ p,
        )

    def __add__(self, other: Tally) -> Tally:
        if tuple(other.labels) != tuple(self.labels):
            raise ValueError(
                f"cannot add tallies of labels {list(self.labels)} and {list(other.labels)}"
            )
        return Tally(
            self.labels,
            self.n + other.n,
            self.predicted + other.predicted,
            self.confusion + other.confusion,
            self.cross + other.cross,
            self.second + other.second,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "n": self.n,
            "predicted": self.predicted.tolist(),
            "confusion": self.confusion.tolist(),
            "cross": self.cross.tolist(),
            "second": self.second.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        return cls(
            tuple(data["labels"]),
            int(data["n"]),
            np.asarray(data["predicted"], float),
            np.asarray(data["confusion"], float),
            np.asarray(data["cross"], float),
            np.asarray(data["second"], float),
        )


@dataclass
class Estimate:
    """Estimated metrics of one window (or job) of `n` predictions."""

    labels: list[str]
    n: int
    accuracy: Interval
    macro_f1: Interval
    recall: dict[str, Interval]
    precision: dict[str, float]
    expected_confusion: list[list[float]]  # rows true, columns predicted (label order)
    expected_support: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "labels": self.labels,
            "accuracy": self.accuracy.to_dict(),
            "macro_f1": self.macro_f1.to_dict(),
            "recall": {k: v.to_dict() for k, v in self.recall.items()},
            "precision": {k: round(v, 4) for k, v in self.precision.items()},
            "expected_support": {k: round(v, 2) for k, v in self.expected_support.items()},
            "expected_confusion": [[round(x, 2) for x in row] for row in self.expected_confusion],
        }


def estimate(proba: Any, labels: Sequence[str], z: float = Z95) -> Estimate:
    """Estimated accuracy, per-class recall and macro-F1 of calibrated probability rows
    (n x classes, in `labels` order), each with its interval (module docstring)."""
    return from_tally(Tally.of(proba, labels), z)


def from_tally(t: Tally, z: float = Z95) -> Estimate:
    """The estimate of a tally (see `Tally`; the delta method over (TP_k, S_k))."""
    k, n = len(t.labels), max(t.n, 0)
    tp = np.diag(t.confusion).copy()  # E[TP_k]
    support = t.confusion.sum(axis=1)  # E[S_j]: rows whose label is j
    m = t.predicted
    # covariance of X = (TP_1..TP_k, S_1..S_k): labels drawn independently from each row's p
    cov = np.zeros((2 * k, 2 * k))
    cov[:k, :k] = np.diag(tp - np.diag(t.cross))
    cov[:k, k:] = np.diag(tp) - t.cross
    cov[k:, :k] = cov[:k, k:].T
    cov[k:, k:] = np.diag(support) - t.second

    def spread(grad: np.ndarray) -> float:
        return float(grad @ cov @ grad)

    if n == 0:
        zero = Interval(0.0, 0.0, 0.0, 1.0)
        return Estimate(
            list(t.labels),
            0,
            zero,
            zero,
            {lab: zero for lab in t.labels},
            {},
            t.confusion.tolist(),
            dict.fromkeys(t.labels, 0.0),
        )
    grad = np.zeros(2 * k)
    grad[:k] = 1.0 / n
    accuracy = Interval.of(float(tp.sum() / n), spread(grad), z)
    recall: dict[str, Interval] = {}
    f1_grad, f1_values = np.zeros(2 * k), []
    counted = 0
    for i, lab in enumerate(t.labels):
        g = np.zeros(2 * k)
        if support[i] > 0:
            g[i], g[k + i] = 1.0 / support[i], -tp[i] / support[i] ** 2
            recall[lab] = Interval.of(float(tp[i] / support[i]), spread(g), z)
        else:
            recall[lab] = Interval(0.0, 0.0, 0.0, 1.0)
        d = m[i] + support[i]
        if d > 0:  # a class nobody has and nobody predicts is left out (as in scoring)
            counted += 1
            f1_values.append(2 * tp[i] / d)
            f1_grad[i] += 2.0 / d
            f1_grad[k + i] += -2.0 * tp[i] / d**2
    macro = float(np.mean(f1_values)) if counted else 0.0
    macro_f1 = Interval.of(macro, spread(f1_grad / max(counted, 1)), z)
    precision = {lab: float(tp[i] / m[i]) if m[i] > 0 else 0.0 for i, lab in enumerate(t.labels)}
    expected = dict(zip(t.labels, map(float, support), strict=True))
    return Estimate(
        list(t.labels), n, accuracy, macro_f1, recall, precision, t.confusion.tolist(), expected
    )


def realized(proba: Any, gold: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """What the labels say of the same rows: accuracy, per-class recall and macro-F1 over
    `labels` (the estimate's classes; a class with neither gold nor prediction left out)."""
    pred = labels_from_proba(np.asarray(proba), list(labels))
    gold = [str(g) for g in gold]
    m = classification_metrics(gold, pred, scored_labels(labels, gold, pred))
    return {
        "n": m["n"],
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "recall": {k: v["recall"] for k, v in m["per_class"].items()},
    }


# ------------------------------------------------------------------------------ histograms
def from_histogram(
    cumulative: dict[float, float], total: float, count: float, z: float = Z95
) -> Interval | None:
    """Estimated accuracy from a Prometheus histogram of the top probability (`le` -> cumulative
    count, `_sum`, `_count`; e.g. `sentiops_prediction_confidence` over a canary step): the
    mean top probability, its variance from sum p (1 - p) with each bucket's p at its
    midpoint. None without predictions."""
    if count <= 0:
        return None
    bounds = sorted(cumulative)
    lower, below, squares = 0.0, 0.0, 0.0
    for b in bounds:
        upper = b if math.isfinite(b) else 1.0
        inside = max(float(cumulative[b]) - below, 0.0)
        mid = (lower + min(upper, 1.0)) / 2
        squares += inside * mid * mid
        lower, below = min(upper, 1.0), max(float(cumulative[b]), below)
    mean = total / count
    return Interval.of(mean, (total - squares) / count**2, z)


# ------------------------------------------------------------------------------ two versions
@dataclass
class Comparison:
    """Canary vs stable on estimated accuracy (a verdict the canary judge can take as is)."""

    result: str  # pass | fail | inconclusive
    drop: float | None  # stable minus canary estimated accuracy (positive: canary worse)
    drop_low: float | None  # the one-sided (1 - alpha) lower bound of the drop
    p_value: float | None  # one-sided: the canary's estimated accuracy is lower
    canary: float | None
    stable: float | None
    margin: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    canary: Interval | None,
    stable: Interval | None,
    *,
    canary_n: float,
    stable_n: float,
    margin: float = 0.05,
    alpha: float = 0.05,
    min_n: int = 50,
    labels: tuple[tuple[float, float], tuple[float, float]] | None = None,
    min_labels: int = 30,
) -> Comparison:
    """Is the canary's calibrated estimated accuracy lower than stable's by more than
    `margin`, given both estimates' uncertainty?

    - `fail` only when the one-sided (1 - alpha) lower bound of the drop (stable minus canary)
      is above `margin`: worse by more than the margin, beyond the estimates' noise;
    - `inconclusive` (the judge holds the step: more traffic narrows it) when the point
      estimate drops by more than `margin` but its bound does not;
    - `pass` otherwise, and always when labels say otherwise: `labels` = ((canary correct,
      canary labelled), (stable correct, stable labelled)) of the random evaluation sample;
      with at least `min_labels` on each side and the canary's labelled accuracy no more than
      `margin` below stable's, the estimate never fails or holds the canary.

    Fewer than `min_n` predictions on a side: `inconclusive`."""
    if canary is None or stable is None or canary_n < min_n or stable_n < min_n:
        why = (
            f"too little traffic to estimate (canary {canary_n:.0f}, stable "
            f"{stable_n:.0f} predictions; need {min_n} each)"
        )
        return Comparison(INCONCLUSIVE, None, None, None, None, None, margin, why)
    from scipy.stats import norm

    drop = stable.value - canary.value
    se = math.hypot(canary.sd, stable.sd)
    p = float(norm.sf(drop / se)) if se > 0 else (0.0 if drop > 0 else 1.0)
    bound = drop - float(norm.ppf(1 - alpha)) * se
    what = (
        f"estimated accuracy (calibrated): canary {canary.value:.3f} (95 % "
        f"{canary.low:.3f}-{canary.high:.3f}, n={canary_n:.0f}) vs stable "
        f"{stable.value:.3f} ({stable.low:.3f}-{stable.high:.3f}, n={stable_n:.0f}); drop "
        f"{drop:+.3f}, one-sided {1 - alpha:.0%} lower bound {bound:+.3f}, margin {margin}; "
        f"p={p:.3g}"
    )
    result = FAIL if bound > margin else INCONCLUSIVE if drop > margin else PASS
    if result != PASS and labels is not None:
        (cc, ct), (sc, st) = labels
        if ct >= min_labels and st >= min_labels and cc / ct >= sc / st - margin:
            what += (
                f"; passed: the labels say otherwise (live accuracy canary {cc / ct:.3f}, "
                f"n={ct:.0f}, vs stable {sc / st:.3f}, n={st:.0f})"
            )
            result = PASS
    return Comparison(result, drop, bound, p, canary.value, stable.value, margin, what)


def compare_histograms(
    canary: tuple[dict[float, float], float, float],
    stable: tuple[dict[float, float], float, float],
    **kw: Any,
) -> Comparison:
    """`compare` on two versions' confidence histograms, each (`le` -> cumulative count, sum,
    count): what the canary judge observes per step (`sentiops_prediction_confidence`).
    Keyword arguments as `compare` (margin, alpha, min_n, labels, min_labels)."""
    return compare(
        from_histogram(*canary),
        from_histogram(*stable),
        canary_n=canary[2],
        stable_n=stable[2],
        **kw,
    )


# ------------------------------------------------------------------------------ its own error
def labelled_error(confidence: Any, correct: Any, z: float = Z95) -> dict[str, float] | None:
    """The estimate's error where labels exist: over labelled predictions (the random
    evaluation sample) with their served top probability `confidence` and whether the model
    was `correct`, the estimated accuracy (mean confidence) minus the realized one, with the
    interval the error stays in when the calibration holds. None without labels."""
    conf = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(correct, dtype=np.float64)
    ok = np.isfinite(conf)
    conf, right = conf[ok], right[ok]
    if not len(conf):
        return None
    est, real = float(conf.mean()), float(right.mean())
    band = Interval.of(est - real, float((conf * (1 - conf)).sum()) / len(conf) ** 2, z)
    return {
        "labels": float(len(conf)),
        "estimated": round(est, 4),
        "realized": round(real, 4),
        "error": round(est - real, 4),
        "error_sd": round(band.sd, 4),
        "expected_within": round(z * band.sd, 4),
    }
