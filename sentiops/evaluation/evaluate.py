"""Evaluation: accuracy, macro-F1, per-class P/R/F1, confusion matrix (JSON + PNG; metrics from
`sentiops.scoring`), expected calibration error, throughput, single-text p95 latency, model size,
and a small behavioural suite (negation, intensifiers, invariance to names / URLs / handles)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sentiops.estimation import calibration
from sentiops.models import LoadedModel
from sentiops.scoring import classification_metrics, labels_from_proba, scored_labels

MB = 1_000_000


def expected_calibration_error(proba: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE over equal-width confidence bins of the top-class probability
    (`sentiops.estimation.calibration.ece`)."""
    return calibration.ece(proba, correct, bins)


def p95_latency_ms(model: LoadedModel, texts: Sequence[str], samples: int = 50) -> float:
    """p95 wall time of single-text predictions (what one online request costs)."""
    pool = list(texts[:samples]) or ["ok"]
    model.predict_proba(pool[:1])  # warm-up: lazy init, caches
    times = []
    for t in pool:
        start = time.perf_counter()
        model.predict_proba([t])
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 95))


def size_mb(folder: Path) -> float:
    """Size of a model directory in MB (10^6 bytes): what the predictor downloads and loads."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / MB


BEHAVIOURAL: dict[str, list[tuple[str, str]]] = {
    # (original, perturbed): negation should move a positive text away from positive
    "negation": [
        ("The service was good.", "The service was not good."),
        ("I love this phone.", "I do not love this phone."),
        ("This movie is great.", "This movie is not great."),
        ("The update works well.", "The update does not work well."),
        ("Their support team is helpful.", "Their support team is not helpful."),
        ("What a nice day.", "What a day, not nice at all."),
    ],
    # intensifiers should not weaken the sentiment's probability
    "intensifier": [
        ("The food was good.", "The food was extremely good."),
        ("The delivery was bad.", "The delivery was really bad."),
        ("I like the new design.", "I really like the new design."),
        ("The battery life is poor.", "The battery life is incredibly poor."),
        ("Great job on the launch.", "Great job on the launch!!!"),
        ("The app is slow.", "The app is very slow."),
    ],
    # names, URLs and handles should not change the prediction
    "invariance": [
        ("Alice said the hotel was lovely.", "Mohammed said the hotel was lovely."),
        (
            "Check out the new release, it is awful",
            "Check out the new release https://t.co/x1, it is awful",
        ),
        ("@jane_doe thanks, the fix worked!", "@b0b thanks, the fix worked!"),
        ("Flight delayed again, terrible.", "Flight delayed again, terrible. http://example.com/a"),
        (
            "Talked to John about the refund, still waiting.",
            "Talked to Priya about the refund, still waiting.",
        ),
        ("@acme your store in Paris is fantastic", "@acme your store in Lagos is fantastic"),
    ],
}


def behavioural_suite(model: LoadedModel) -> dict[str, Any]:
    """Pass rate per test type; each case compares a text with a perturbed copy."""
    labels = model.labels
    pos = labels.index("positive") if "positive" in labels else None
    results: dict[str, Any] = {}
    for kind, cases in BEHAVIOURAL.items():
        a = model.predict_proba([x for x, _ in cases])
        b = model.predict_proba([y for _, y in cases])
        passed = []
        for i in range(len(cases)):
            ka = int(a[i].argmax())
            if kind == "negation":
                ok = pos is not None and b[i][pos] < a[i][pos]
            elif kind == "intensifier":
                ok = b[i][ka] >= a[i][ka] - 0.05
            else:
                ok = int(b[i].argmax()) == ka
            passed.append(bool(ok))
        results[kind] = {
            "pass_rate": float(np.mean(passed)),
            "passed": int(sum(passed)),
            "n": len(cases),
            "failed": [cases[i][1] for i, ok in enumerate(passed) if not ok],
        }
    return results


def evaluate(
    model: LoadedModel, texts: Sequence[str], labels: Sequence[str], behavioural: bool = True
) -> dict[str, Any]:
    """All metrics of `model` on (texts, labels); includes per-example predictions."""
    texts = list(texts)
    start = time.perf_counter()
    raw = model.predict_proba(texts, calibrated=False)
    proba = model.calibrate(raw)  # what is served
    elapsed = time.perf_counter() - start
    labels = list(labels)
    pred = labels_from_proba(proba, model.labels)
    result = classification_metrics(labels, pred, scored_labels(model.labels, labels, pred))
    result |= calibration_metrics(model, raw, proba, labels)
    result["texts_per_sec"] = float(len(texts) / elapsed) if elapsed > 0 else float("inf")
    result["model_type"] = model.manifest.get("model_type")
    result["model_version"] = model.version
    result["predictions"] = pred
    if behavioural:
        result["behavioural"] = behavioural_suite(model)
    return result


def calibration_metrics(
    model: LoadedModel, raw: np.ndarray, proba: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """`ece` and `brier` of the served (calibrated) probabilities; with a calibrator also
    `ece_uncalibrated` / `brier_uncalibrated` of the model type's own on the same rows, and
    the calibrator (`calibration`: method, parameters, what it did on validation)."""
    served = calibration.quality(proba, labels, model.labels)
    out: dict[str, Any] = {"ece": served["ece"], "brier": served["brier"]}
    if model.calibrator is not None:
        before = calibration.quality(raw, labels, model.labels)
        out |= {"ece_uncalibrated": before["ece"], "brier_uncalibrated": before["brier"]}
    record = model.manifest.get("calibration")
    if record:
        out["calibration"] = {k: v for k, v in record.items() if k not in ("labels", "file")}
    return out


def plot_confusion(result: dict[str, Any], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(result["confusion_matrix"]["matrix"])
    labs = result["confusion_matrix"]["labels"]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labs)), labs, rotation=30)
    ax.set_yticks(range(len(labs)), labs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labs)):
        for j in range(len(labs)):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    ax.set_title(title or f"macro-F1 {result['macro_f1']:.3f}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(result: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return path
