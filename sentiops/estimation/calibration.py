"""Calibration: a model's probabilities made to mean what they say, so that among the answers
given with probability 0.8 about 80 % are right. Estimating performance without labels rests
on it (`sentiops.estimation.performance`), and so does any comparison of two models'
confidence: an uncalibrated network is typically over-confident, a TF-IDF model with strong
regularisation under-confident.

Fitted once, when a model is packaged, on the validation split (texts the model never trained
on), for the form that serves (the training step calibrates whatever `load_model` runs: a
distilled student is calibrated as itself). Stored in the model directory as JSON (no
pickle) under the model's checksums and signature; `sentiops.models.LoadedModel` applies it to
every probability it returns, so the predictor, batch scoring, the evaluation, the gate and the
drift sidecar all see calibrated probabilities.

    <model>/calibration.json   {"method", "labels", "temperature" | "scale" + "bias", ...}

Methods (softmax over the log-probabilities, so they work for any model type, whatever it
returns):

    temperature  p' = softmax(log p / T): one parameter; never changes the predicted label
    vector       p' = softmax(w * log p + b), one scale and one bias per class (L2-tied to
                 the temperature solution): more freedom, may change labels, needs more rows

The record in the manifest measures what calibration did on held-out rows: the validation
split is cut in two, each half is calibrated by a calibrator fitted on the other half, and
ECE, Brier score and log-loss before and after are computed over all of it (2-fold
cross-fitting), then the stored calibrator is fitted on the whole split.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentiops.errors import ModelError
from sentiops.scoring import one_hot

FILE = "calibration.json"
METHODS = ("temperature", "vector")
#: Fewer labelled validation rows than this: no calibrator (recorded as skipped).
MIN_ROWS = 30
#: ECE's equal-width bins of the top probability.
BINS = 15
EPS = 1e-12
_T_BOUNDS = (0.05, 20.0)
_VECTOR_L2 = 0.01


def log_proba(proba: Any) -> np.ndarray:
    """log p, with probabilities clipped to [1e-12, 1] (a model's 0 is never -inf)."""
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), EPS, 1.0))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class Calibrator:
    """A fitted calibration map for one model's label order."""

    labels: tuple[str, ...]
    method: str = "temperature"
    temperature: float = 1.0
    scale: tuple[float, ...] = ()
    bias: tuple[float, ...] = ()

    def apply(self, proba: Any) -> np.ndarray:
        """Calibrated probabilities of rows `proba` (n x classes, in `labels` order); the
        input's float dtype is kept (ONNX models answer float32)."""
        p = np.asarray(proba)
        if p.ndim != 2 or p.shape[1] != len(self.labels):
            raise ValueError(
                f"probabilities of shape {p.shape} for a calibrator of {len(self.labels)} "
                f"classes {list(self.labels)}"
            )
        z = log_proba(p)
        if self.method == "vector":
            z = z * np.asarray(self.scale) + np.asarray(self.bias)
        else:
            z = z / self.temperature
        out = softmax(z)
        return out.astype(p.dtype) if p.dtype.kind == "f" else out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "labels": list(self.labels),
            "temperature": round(self.temperature, 6),
        }
        if self.method == "vector":
            out |= {
                "scale": [round(x, 6) for x in self.scale],
                "bias": [round(x, 6) for x in self.bias],
            }
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = FILE) -> Calibrator:
        """The calibrator a `to_dict` wrote; anything else is a ModelError naming the field."""
        fix = "the model directory is corrupt or from another SentiOps: retrain or re-download it"
        if not isinstance(data, dict):
            raise ModelError(f"{where} holds no JSON object", fix)
        method, labels = data.get("method"), data.get("labels")
        if method not in METHODS:
            raise ModelError(
                f"{where}: unknown calibration method {method!r} (known: {', '.join(METHODS)})", fix
            )
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) for x in labels)
        ):
            raise ModelError(f"{where}: `labels` must be a list of class names", fix)
        try:
            t = float(data.get("temperature", 1.0))
            scale = tuple(float(x) for x in data.get("scale", ()))
            bias = tuple(float(x) for x in data.get("bias", ()))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{where}: a parameter is not a number ({exc})", fix) from None
        if not np.isfinite(t) or t <= 0:
            raise ModelError(f"{where}: temperature {t} must be a positive number", fix)
        if method == "vector" and not (
            len(scale) == len(bias) == len(labels) and np.isfinite(scale + bias).all()
        ):
            raise ModelError(
                f"{where}: vector scaling needs one finite scale and bias per "
                f"class ({len(labels)})",
                fix,
            )
        return cls(tuple(labels), str(method), t, scale, bias)


# ------------------------------------------------------------------------------ measures
def gold_index(gold: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """The index of each gold label in `labels`, -1 where a label is not one of them."""
    index = {lab: i for i, lab in enumerate(labels)}
    return np.array([index.get(str(g), -1) for g in gold], dtype=np.int64)


def ece(proba: Any, correct: Any, bins: int = BINS) -> float:
    """Expected calibration error of the top probability: over equal-width bins of it, the
    share of rows times |accuracy - mean top probability| of the bin."""
    conf = np.asarray(proba, dtype=np.float64).max(axis=1)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(total)


def brier(proba: Any, gold: Sequence[str], labels: Sequence[str]) -> float:
    """Multi-class Brier score: the mean over rows of sum_k (p_k - [gold = k])^2 (0 is
    perfect; a gold label outside `labels` counts as an all-zero row)."""
    p = np.asarray(proba, dtype=np.float64)
    if not len(p):
        return 0.0
    return float(((p - one_hot(list(gold), list(labels))) ** 2).sum(axis=1).mean())


def log_loss(proba: Any, gold_idx: np.ndarray) -> float:
    """Mean negative log-probability of the gold class (rows with a known gold label)."""
    known = gold_idx >= 0
    if not known.any():
        return 0.0
    z = log_proba(np.asarray(proba)[known])
    return float(-z[np.arange(int(known.sum())), gold_idx[known]].mean())


def quality(proba: Any, gold: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """ECE, Brier score, log-loss, accuracy and mean top probability of rows `proba`."""
    p = np.asarray(proba, dtype=np.float64)
    idx = gold_index(gold, labels)
    correct = p.argmax(axis=1) == idx
    return {
        "ece": round(ece(p, correct), 4),
        "brier": round(brier(p, gold, labels), 4),
        "log_loss": round(log_loss(p, idx), 4),
        "accuracy": round(float(correct.mean()) if len(p) else 0.0, 4),
        "mean_confidence": round(float(p.max(axis=1).mean()) if len(p) else 0.0, 4),
    }


# ------------------------------------------------------------------------------ fitting
def fit(
    proba: Any, gold: Sequence[str], labels: Sequence[str], method: str = "temperature"
) -> Calibrator:
    """Fit `method` by minimising the log-loss of rows `proba` (n x len(labels)) against their
    gold labels (rows whose gold label is not one of `labels` are left out)."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use one of {METHODS}")
    p = np.asarray(proba, dtype=np.float64)
    idx = gold_index(gold, labels)
    if p.shape != (len(idx), len(labels)):
        raise ValueError(
            f"probabilities of shape {p.shape} for {len(idx)} gold labels and {len(labels)} classes"
        )
    known = idx >= 0
    z, y = log_proba(p[known]), idx[known]
    if not len(y):
        raise ValueError("no row has a gold label among the model's labels")
    t = _fit_temperature(z, y)
    if method == "temperature":
        return Calibrator(tuple(labels), "temperature", t)
    scale, bias = _fit_vector(z, y, t)
    return Calibrator(tuple(labels), "vector", t, scale, bias)


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float((lse - z[np.arange(len(y)), y]).mean())


def _fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    lo, hi = np.log(_T_BOUNDS[0]), np.log(_T_BOUNDS[1])
    res = minimize_scalar(
        lambda s: _nll(z / np.exp(s), y), bounds=(lo, hi), method="bounded", options={"xatol": 1e-4}
    )
    return float(np.exp(res.x))


def _fit_vector(
    z: np.ndarray, y: np.ndarray, temperature: float
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-class scale and bias, pulled towards the temperature solution (scale 1/T, bias 0)
    by a small L2 penalty: with a few hundred rows, free per-class parameters overfit."""
    from scipy.optimize import minimize

    n, k = z.shape
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    w0 = np.full(k, 1.0 / temperature)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:k], theta[k:]
        logits = z * w + b
        p = softmax(logits)
        value = _nll(logits, y) + _VECTOR_L2 * (((w - w0) ** 2).sum() + (b**2).sum())
        diff = (p - onehot) / n
        grad = np.concatenate(
            [
                (diff * z).sum(axis=0) + 2 * _VECTOR_L2 * (w - w0),
                diff.sum(axis=0) + 2 * _VECTOR_L2 * b,
            ]
        )
        return value, grad

    res = minimize(loss, np.concatenate([w0, np.zeros(k)]), jac=True, method="L-BFGS-B")
    return tuple(float(x) for x in res.x[:k]), tuple(float(x) for x in res.x[k:])


def fit_and_measure(
    proba: Any,
    gold: Sequence[str],
    labels: Sequence[str],
    method: str = "temperature",
    seed: int = 0,
) -> tuple[Calibrator | None, dict[str, Any]]:
    """The calibrator fitted on all rows, and the record of what it does on held-out rows
    (2-fold cross-fitting, module docstring): `before` / `after` quality, the parameters.
    With fewer than MIN_ROWS labelled rows: (None, a record saying it was skipped)."""
    p = np.asarray(proba, dtype=np.float64)
    gold = [str(g) for g in gold]
    idx = gold_index(gold, labels)
    known = np.flatnonzero(idx >= 0)
    if len(known) < MIN_ROWS:
        return None, {
            "skipped": f"{len(known)} labelled validation rows; calibration needs "
            f"at least {MIN_ROWS}"
        }
    p, gold = p[known], [gold[i] for i in known]
    folds = np.random.default_rng(seed).permutation(len(p)) % 2
    held_out = np.empty_like(p)
    for f in (0, 1):
        other = folds != f
        cal = fit(p[other], [g for g, o in zip(gold, other, strict=True) if o], labels, method)
        held_out[folds == f] = cal.apply(p[folds == f])
    final = fit(p, gold, labels, method)
    record = {
        **final.to_dict(),
        "file": FILE,
        "rows": len(p),
        "measured": "2-fold cross-fitting on the validation split: each half calibrated by a "
        "calibrator fitted on the other half",
        "before": quality(p, gold, labels),
        "after": quality(held_out, gold, labels),
    }
    return final, record


# ------------------------------------------------------------------------------ storage
def save(folder: Path, calibrator: Calibrator) -> None:
    """Write `calibration.json` into a model directory being written (`modeldir.extend`)."""
    (Path(folder) / FILE).write_text(json.dumps(calibrator.to_dict(), indent=2) + "\n")


def read(folder: Path, manifest: dict[str, Any]) -> Calibrator | None:
    """The calibrator of a model directory, or None when its manifest lists none (a model
    packaged before calibration existed, or with calibration off: raw probabilities). The
    file was checked against the manifest's sha256 when the directory was read."""
    if FILE not in (manifest.get("files") or {}):
        return None
    path = Path(folder) / FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read {path}: {exc}", "re-download the model directory or retrain it"
        ) from exc
    calibrator = Calibrator.from_dict(data, str(path))
    labels = [str(x) for x in manifest.get("labels") or []]
    if labels and list(calibrator.labels) != labels:
        raise ModelError(
            f"{path} is for labels {list(calibrator.labels)}, the model's are {labels}",
            "retrain the model (its calibration belongs to another)",
        )
    return calibrator
