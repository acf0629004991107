"""Simulated traffic for the canary judge: what a predictor with known properties serves."""

from __future__ import annotations

import numpy as np

from sentiops.metrics import CONFIDENCE_BUCKETS, LATENCY_BUCKETS
from sentiops.rollout.judge import Observed

LABELS = ("negative", "neutral", "positive")
MIX = (0.3, 0.2, 0.5)


def _hist(samples: np.ndarray, bounds: tuple[float, ...]) -> dict[float, float]:
    edges = [*bounds, float("inf")]
    return {b: float((samples <= b).sum()) for b in edges}


def serve(
    rng: np.random.Generator,
    n: int,
    error_rate: float = 0.01,
    latency_ms: float = 20.0,
    confidence: float = 0.8,
    mix: tuple[float, ...] = MIX,
    accuracy: float | None = None,
) -> Observed:
    """What a predictor with these properties serves to `n` requests."""
    latency = rng.lognormal(np.log(latency_ms / 1000), 0.4, n)
    conf = np.clip(rng.normal(confidence, 0.1, n), 0.34, 1.0)
    labels = rng.choice(len(LABELS), n, p=mix)
    obs = Observed(
        requests=n,
        errors=float(rng.binomial(n, error_rate)),
        latency_buckets=_hist(latency, LATENCY_BUCKETS),
        confidence_buckets=_hist(conf, CONFIDENCE_BUCKETS),
        confidence_sum=float(conf.sum()),
        confidence_count=float(n),
        labels={lab: float((labels == i).sum()) for i, lab in enumerate(LABELS)},
    )
    if accuracy is not None:
        k = n // 2
        obs.feedback_total, obs.feedback_correct = k, float(rng.binomial(k, accuracy))
    return obs


class Simulated:
    """A metric source whose canary (version "2" unless told) serves with `canary` properties
    and whose stable version serves healthy traffic."""

    def __init__(self, canary: dict, seed: int = 3, canary_version: str = "2") -> None:
        self.rng = np.random.default_rng(seed)
        self.canary = canary
        self.canary_version = canary_version

    def observe(self, version: str, seconds: float) -> Observed:
        if version == self.canary_version:
            return serve(self.rng, 400, **self.canary)
        return serve(self.rng, 1600)
