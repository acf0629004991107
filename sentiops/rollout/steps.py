"""The rollout's step loop: walk the traffic steps of a `Plan`, moving traffic with an `Executor`
(a KServe InferenceService, or two local predictors behind a split) and reading what each
version served from a `MetricSource` (Prometheus); the judge (`sentiops.rollout.judge`)
decides each step, and the loop promotes or rolls back by itself, keeping the record
(`sentiops.rollout.record`).

Two modes, one loop (`Plan.mode`):

    canary  a step's percentage of requests is *answered* by the candidate (the rest by stable)
    shadow  a step's percentage of requests is *copied* to the candidate (a mirror): every client
            gets stable's answer, the candidate's answers are only measured; `promote` then
            switches serving to the candidate, `rollback` removes the shadow. The executor
            decides what the percentage means (`sentiops.rollout.shadow`, the local stack's
            mirror); the statistics and the decisions are the same.

At a 100 % canary step the stable version serves nothing, so the canary is compared with the
stable traffic of the last step that had enough of it (the step record says so; at twice the
load, latency is judged conservatively there). A shadow never takes traffic from stable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sentiops.errors import RolloutError
from sentiops.rollout.judge import (
    HOLD,
    PROMOTE,
    ROLLBACK,
    JudgeConfig,
    Observed,
    decide_step,
    judge_metrics,
    quantile,
    score,
)
from sentiops.rollout.record import PROMOTED, ROLLED_BACK, Record, Step

CANARY, SHADOW = "canary", "shadow"
MODES = (CANARY, SHADOW)


@dataclass
class Plan:
    """What to roll out and how: traffic steps (percent of requests answered by the canary, or
    with `mode` shadow copied to it)."""

    canary_version: str
    stable_version: str | None
    steps: list[int] = field(default_factory=lambda: [10, 50, 100])
    step_seconds: float = 600.0
    max_holds: int = 2
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    mode: str = CANARY

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.steps or any(not 0 < s <= 100 for s in self.steps):
            raise ValueError(f"steps must be percentages in (0, 100], got {self.steps}")
        if list(self.steps) != sorted(self.steps):
            raise ValueError(f"steps must not decrease, got {self.steps}")
        if self.step_seconds <= 0:
            raise ValueError("step_seconds must be > 0")


class Executor(Protocol):
    """Moves traffic: a KServe InferenceService, or two local predictors behind a split. In a
    shadow rollout `traffic` is the share of requests copied to the candidate."""

    def start(self, traffic: int) -> None:
        """Deploy the canary next to stable with `traffic` % of requests; wait until ready."""

    def set_traffic(self, traffic: int) -> None: ...

    def promote(self) -> None:
        """The canary takes 100 % and becomes the stable version."""

    def rollback(self) -> None:
        """All traffic back to stable (a shadow is removed); the previous spec is restored."""


class MetricSource(Protocol):
    def observe(self, version: str, seconds: float) -> Observed:
        """What `version` served over the last `seconds`."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _observed_summary(o: Observed) -> dict[str, Any]:
    return {
        "requests": o.requests,
        "errors": o.errors,
        "error_rate": o.error_rate,
        "p95_latency_s": quantile(o.latency_buckets, 0.95),
        "mean_confidence": o.mean_confidence,
        "labels": dict(o.labels),
        "feedback_total": o.feedback_total,
    }


def run(
    plan: Plan,
    executor: Executor,
    source: MetricSource,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], Any] = print,
    on_step: Callable[[Step], Any] | None = None,
) -> Record:
    """Walk the traffic steps; judge each from `source`; promote or roll back by itself.

    With no stable version (the first deployment) there is nothing to compare: the model is
    deployed at 100 % and promoted."""
    record = Record(
        ROLLED_BACK,
        plan.canary_version,
        plan.stable_version,
        [],
        [],
        asdict(plan.judge)
        | {
            "steps": plan.steps,
            "step_seconds": plan.step_seconds,
            "max_holds": plan.max_holds,
        },  # fmt: skip
        _now(),
        mode=plan.mode,
    )
    moved = "copied to" if plan.mode == SHADOW else "to"
    if plan.stable_version is None:
        executor.start(100)
        executor.promote()
        record.decision = PROMOTED
        record.reasons = ["first deployment: no stable version to compare with"]
        record.ended_at = _now()
        return record
    try:
        executor.start(plan.steps[0])
        i, holds = 0, 0
        last_stable: tuple[Observed, int] | None = None
        while True:
            traffic = plan.steps[i]
            started = _now()
            progress(f"step {i + 1}/{len(plan.steps)}: {traffic}% {moved} v{plan.canary_version} "
                     f"for {plan.step_seconds:.0f}s")  # fmt: skip
            sleep(plan.step_seconds)
            # a held step is observed again over the whole step so far: a hold buys more
            # traffic and more labels, never a fresh small window
            window = plan.step_seconds * (holds + 1)
            canary = source.observe(plan.canary_version, window)
            stable = source.observe(plan.stable_version, window)
            baseline = "live"
            if stable.requests >= plan.judge.min_requests:
                last_stable = (stable, traffic)
            elif traffic == 100 and last_stable is not None:
                # all traffic on the canary: judge it against what stable served last
                stable = last_stable[0]
                baseline = f"the stable traffic of the {last_stable[1]}% step"
            checks = judge_metrics(canary, stable, plan.judge)
            last = i == len(plan.steps) - 1
            verdict, reasons = decide_step(checks, last, holds, plan.max_holds)
            step = Step(traffic, verdict, checks, score(checks), _observed_summary(canary),
                        _observed_summary(stable), started, _now(), baseline, window,
                        plan.mode)  # fmt: skip
            record.steps.append(step)
            if on_step:
                on_step(step)
            progress(
                f"  -> {verdict} (score {step.score:.0f})" + "".join(f"\n     {r}" for r in reasons)
            )
            if verdict == ROLLBACK:
                executor.rollback()
                record.reasons = reasons
                break
            if verdict == HOLD:
                holds += 1
                continue
            holds = 0
            if verdict == PROMOTE:
                executor.promote()
                record.decision = PROMOTED
                record.reasons = [f"every metric passed at {len(plan.steps)} step(s)"]
                break
            i += 1
            executor.set_traffic(plan.steps[i])
    except BaseException as exc:
        # whatever broke (the cluster, the metrics, Ctrl-C), never leave a canary half-rolled
        record.reasons = [f"rollout aborted: {type(exc).__name__}: {exc}"]
        record.decision = ROLLED_BACK
        record.ended_at = _now()
        try:
            executor.rollback()
        finally:
            record.ended_at = _now()
        raise RolloutError(
            "; ".join(record.reasons),
            f"the {plan.mode} was rolled back; fix the cause and run the rollout again",
            record,
        ) from exc
    record.ended_at = _now()
    return record
