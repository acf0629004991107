"""Simulated rollouts: the real step loop and judge over simulated traffic, without servers.

What would the judge decide, and how soon, at 10 requests a minute, or with 5 % of predictions
labelled? `SimulatedRollout` is an `Executor` and a `MetricSource` at once: requests arrive as a
Poisson stream at `rpm` a minute and are routed to the canary with the step's percentage (in a
shadow rollout a copy goes to the candidate and stable serves all); each version serves them
with its `Behaviour` (error rate, a lognormal latency, a normal confidence clipped to [1/3, 1],
a label mix, an accuracy on the labelled share). Every count is drawn directly (binomial and
multinomial over the Prometheus buckets of `sentiops.metrics`), so a simulated hour at 1,000
requests a minute takes milliseconds. `simulate()` runs `steps.run` on it with a simulated
clock. The property tests of the judge (tests/rollout/test_rollout_judge.py) and `make
bench-judge` (benchmarks/judge.py) use it; so can anyone sizing a plan for their traffic.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats

from sentiops.metrics import CONFIDENCE_BUCKETS, LATENCY_BUCKETS
from sentiops.rollout.judge import Observed
from sentiops.rollout.record import Record
from sentiops.rollout.steps import SHADOW, RolloutPlan, run

LABELS = ("negative", "neutral", "positive")


@dataclass(frozen=True)
class Behaviour:
    """How a model version serves (the defaults: a healthy three-class model)."""

    error_rate: float = 0.005
    latency_s: float = 0.03  # median request latency
    latency_spread: float = 0.4  # sigma of log latency
    confidence: float = 0.8
    confidence_spread: float = 0.1
    mix: tuple[float, ...] = (0.3, 0.2, 0.5)
    accuracy: float = 0.85


#: Faults of a canary, as changes to a healthy behaviour (what `make bench-judge` injects).
FAULTS: dict[str, dict[str, Any]] = {
    "errors +1 pt": {"error_rate": 0.015},
    "p95 +30 %": {"latency_s": 0.039},
    "accuracy -5 pts": {"accuracy": 0.80},
    "label-mix shift": {"mix": (0.25, 0.1, 0.65)},
}


def faulty(kind: str, base: Behaviour | None = None) -> Behaviour:
    """A canary with fault `kind` (a key of FAULTS) over `base`."""
    return replace(base or Behaviour(), **FAULTS[kind])


@functools.lru_cache(maxsize=64)
def _clipped_normal(mean: float, sd: float) -> tuple[float, float]:
    """Mean and standard deviation of a normal clipped to [1/3, 1]."""
    x = np.clip(stats.norm.ppf(np.linspace(0.0005, 0.9995, 2000), mean, sd), 1 / 3, 1.0)
    return float(x.mean()), float(x.std())


def _histogram(
    n: int, cdf: np.ndarray, bounds: tuple[float, ...], rng: np.random.Generator
) -> dict[float, float]:
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    counts = rng.multinomial(n, np.clip(probs, 0, None) / np.clip(probs, 0, None).sum())
    return dict(zip([*bounds, float("inf")], np.cumsum(counts).astype(float), strict=True))


def serve(rng: np.random.Generator, n: int, b: Behaviour, label_rate: float = 0.0) -> Observed:
    """What a version with behaviour `b` serves to `n` requests (a share `label_rate` labelled)."""
    lat_cdf = stats.lognorm.cdf(LATENCY_BUCKETS, b.latency_spread, scale=b.latency_s)
    edges = np.array(CONFIDENCE_BUCKETS)
    conf_cdf = np.where(edges >= 1.0, 1.0, stats.norm.cdf(edges, b.confidence, b.confidence_spread))
    mean, sd = _clipped_normal(b.confidence, b.confidence_spread)
    labels = rng.multinomial(n, np.array(b.mix) / sum(b.mix))
    labelled = int(rng.binomial(n, label_rate)) if label_rate > 0 else 0
    return Observed(
        requests=float(n),
        errors=float(rng.binomial(n, b.error_rate)),
        latency_buckets=_histogram(n, lat_cdf, LATENCY_BUCKETS, rng),
        confidence_buckets=_histogram(n, conf_cdf, CONFIDENCE_BUCKETS, rng),
        confidence_sum=float(n * mean + np.sqrt(n) * sd * rng.standard_normal()) if n else 0.0,
        confidence_count=float(n),
        labels={label: float(c) for label, c in zip(LABELS, labels, strict=False)},
        feedback_correct=float(rng.binomial(labelled, b.accuracy)),
        feedback_total=float(labelled),
    )


def window(
    rng: np.random.Generator,
    rpm: float,
    seconds: float,
    traffic: int,
    canary: Behaviour,
    stable: Behaviour,
    label_rate: float = 0.0,
    mode: str = "canary",
) -> tuple[Observed, Observed]:
    """(canary, stable) over `seconds` of Poisson traffic at `rpm`, `traffic` % to the canary
    (shadow: copied to it, stable serves all)."""
    total = int(rng.poisson(rpm * seconds / 60.0))
    to_canary = int(rng.binomial(total, traffic / 100.0))
    to_stable = total if mode == SHADOW else total - to_canary
    return (serve(rng, to_canary, canary, label_rate), serve(rng, to_stable, stable, label_rate))


class SimulatedRollout:
    """An Executor and a MetricSource over simulated traffic, with its own clock (`sleep`
    advances it; `clock` reads it): pass both to `steps.run`."""

    def __init__(
        self,
        rpm: float,
        canary: Behaviour,
        stable: Behaviour,
        *,
        label_rate: float = 0.0,
        seed: int = 0,
        mode: str = "canary",
        canary_version: str = "2",
    ) -> None:
        self.rpm, self.canary, self.stable, self.label_rate = rpm, canary, stable, label_rate
        self.mode, self.canary_version = mode, canary_version
        self.rng = np.random.default_rng(seed)
        self.traffic, self.seconds = 0, 0.0
        self.calls: list[str] = []
        self._pending: dict[str, Observed] = {}

    # Executor
    def start(self, traffic: int) -> None:
        self.traffic = traffic
        self.calls.append(f"start {traffic}")

    def set_traffic(self, traffic: int) -> None:
        self.traffic = traffic
        self.calls.append(f"traffic {traffic}")

    def promote(self) -> None:
        self.calls.append("promote")

    def rollback(self) -> None:
        self.calls.append("rollback")

    # MetricSource: the canary's and stable's windows are drawn together, read one at a time
    def observe(self, version: str, seconds: float) -> Observed:
        key = "canary" if version == self.canary_version else "stable"
        if key not in self._pending:
            c, s = window(
                self.rng,
                self.rpm,
                seconds,
                self.traffic,
                self.canary,
                self.stable,
                self.label_rate,
                self.mode,
            )
            self._pending = {"canary": c, "stable": s}
        return self._pending.pop(key)

    # the clock
    def sleep(self, seconds: float) -> None:
        self.seconds += seconds

    def clock(self) -> float:
        return self.seconds


def simulate(plan: RolloutPlan, sim: SimulatedRollout, **kw: Any) -> Record:
    """`steps.run(plan)` over `sim` on its simulated clock (quietly); `sim.seconds` is then the
    time the rollout took."""
    return run(plan, sim, sim, sleep=sim.sleep, progress=lambda _: None, clock=sim.clock, **kw)
