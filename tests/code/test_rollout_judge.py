"""The canary judge on simulated traffic: a canary identical to stable is rolled back for noise
in at most `alpha` of the steps; a clearly worse one (errors, latency, label mix, confidence,
live accuracy) is never promoted; too little traffic is inconclusive, then a rollback."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentiops.errors import RolloutError
from sentiops.rollout import judge, steps
from sentiops.rollout.record import PROMOTED, ROLLED_BACK
from tests.traffic import Simulated, serve

CFG = judge.JudgeConfig()


def _verdict(canary: judge.Observed, stable: judge.Observed) -> str:
    checks = judge.judge_metrics(canary, stable, CFG)
    return judge.decide_step(checks, last_step=True, holds=0, max_holds=2)[0]


def test_identical_canary_false_alarm_rate_is_below_alpha() -> None:
    rng = np.random.default_rng(0)
    trials = 400
    alarms = sum(
        _verdict(serve(rng, 400, accuracy=0.8), serve(rng, 2000, accuracy=0.8)) == judge.ROLLBACK
        for _ in range(trials)
    )
    assert alarms / trials <= CFG.alpha, f"{alarms}/{trials} rolled back for noise"


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(200, 3000))
def test_same_model_is_never_rolled_back_beyond_noise(seed: int, n: int) -> None:
    """Same distribution, any traffic: the margins keep noise from ever failing a metric by a
    wide margin, so what can fail must be within the stated alpha (checked above); here every
    failing metric must at least be a small effect."""
    rng = np.random.default_rng(seed)
    for c in judge.judge_metrics(serve(rng, n), serve(rng, n), CFG):
        assert c.result != judge.INCONCLUSIVE
        if c.result == judge.FAIL:
            assert c.value is not None and c.value < 3 * (c.threshold or 0) + 0.05


@pytest.mark.parametrize(
    ("worse", "metric"),
    [
        ({"error_rate": 0.12}, "error_rate"),
        ({"latency_ms": 120.0}, "latency"),
        ({"mix": (0.1, 0.1, 0.8)}, "label_mix"),
        ({"confidence": 0.6}, "confidence"),
        ({"accuracy": 0.6}, "live_accuracy"),
    ],
)
def test_clearly_worse_canary_is_rolled_back_for_the_right_reason(worse: dict, metric: str) -> None:
    rng = np.random.default_rng(1)
    others = 0
    for _ in range(20):
        # labels outrank the label-mix proxy, so the mix case is judged without labels
        labelled = {} if metric == "label_mix" else {"accuracy": 0.85}
        canary = serve(rng, 300, **(labelled | worse))
        stable = serve(rng, 1500, **labelled)
        checks = judge.judge_metrics(canary, stable, CFG)
        verdict, reasons = judge.decide_step(checks, True, 0, 2)
        assert verdict == judge.ROLLBACK
        failed = {c.name for c in checks if c.result == judge.FAIL}
        assert metric in failed and any(r.startswith(metric) for r in reasons)
        others += len(failed - {metric})
    assert others <= 2  # the healthy metrics fail only at the noise rate


def test_too_little_traffic_holds_then_rolls_back() -> None:
    rng = np.random.default_rng(2)
    checks = judge.judge_metrics(serve(rng, 10), serve(rng, 500), CFG)
    assert {c.result for c in checks} == {judge.INCONCLUSIVE}
    assert "canary served 10 requests" in checks[0].message
    assert judge.decide_step(checks, False, 0, 2)[0] == judge.HOLD
    verdict, reasons = judge.decide_step(checks, False, 2, 2)
    assert verdict == judge.ROLLBACK and "after 2 hold(s)" in reasons[0]


def test_quantile_matches_histogram_quantile() -> None:
    hist = {0.1: 50.0, 0.2: 90.0, 0.5: 100.0, float("inf"): 100.0}
    assert judge.quantile(hist, 0.5) == pytest.approx(0.1)
    assert judge.quantile(hist, 0.95) == pytest.approx(0.2 + 0.3 * 0.5)
    assert judge.quantile({}, 0.9) is None


class FakeExecutor:
    """Records the traffic moves the loop asks for (the real executors are tested against a
    real kube-apiserver and real local predictors)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self, traffic: int) -> None:
        self.calls.append(f"start {traffic}")

    def set_traffic(self, traffic: int) -> None:
        self.calls.append(f"traffic {traffic}")

    def promote(self) -> None:
        self.calls.append("promote")

    def rollback(self) -> None:
        self.calls.append("rollback")


def test_loop_promotes_a_healthy_canary_step_by_step() -> None:
    ex = FakeExecutor()
    plan = steps.Plan("2", "1", steps=[10, 50, 100], step_seconds=1)
    record = steps.run(plan, ex, Simulated({}), sleep=lambda s: None, progress=lambda m: None)
    assert record.decision == PROMOTED
    assert ex.calls == ["start 10", "traffic 50", "traffic 100", "promote"]
    assert [s.verdict for s in record.steps] == ["continue", "continue", "promote"]
    assert "# Canary rollout: PROMOTED" in record.to_markdown()


def test_loop_rolls_back_a_skewed_canary_at_the_first_step() -> None:
    ex = FakeExecutor()
    plan = steps.Plan("2", "1", steps=[10, 50, 100], step_seconds=1)
    record = steps.run(
        plan,
        ex,
        Simulated({"mix": (0.05, 0.05, 0.9)}),
        sleep=lambda s: None,
        progress=lambda m: None,
    )
    assert record.decision == ROLLED_BACK and ex.calls == ["start 10", "rollback"]
    assert record.reasons and record.reasons[0].startswith("label_mix")
    assert record.to_dict()["steps"][0]["checks"][3]["name"] == "label_mix"


def test_loop_rolls_back_when_it_breaks_midway() -> None:
    class Broken(Simulated):
        def observe(self, version: str, seconds: float) -> judge.Observed:
            raise ConnectionError("prometheus is down")

    ex = FakeExecutor()
    with pytest.raises(RolloutError, match="prometheus is down") as info:
        steps.run(steps.Plan("2", "1", step_seconds=1), ex, Broken({}), sleep=lambda s: None,
                    progress=lambda m: None)  # fmt: skip
    assert ex.calls == ["start 10", "rollback"]
    assert info.value.record.decision == ROLLED_BACK


def test_first_deployment_goes_straight_to_100() -> None:
    ex = FakeExecutor()
    record = steps.run(steps.Plan("1", None), ex, Simulated({}), sleep=lambda s: None)
    assert record.decision == PROMOTED and ex.calls == ["start 100", "promote"]


def test_plan_rejects_bad_steps() -> None:
    with pytest.raises(ValueError, match="must not decrease"):
        steps.Plan("2", "1", steps=[50, 10])
    with pytest.raises(ValueError, match="percentages"):
        steps.Plan("2", "1", steps=[0, 100])


def test_a_different_label_mix_passes_when_live_accuracy_shows_the_canary_is_right() -> None:
    """A model retrained for drifted traffic predicts another mix: with labels saying it is
    more accurate, that is not a reason to roll it back; without labels it is."""
    rng = np.random.default_rng(11)
    shifted = {"mix": (0.6, 0.1, 0.3)}
    canary = serve(rng, 600, accuracy=0.9, **shifted)
    stable = serve(rng, 600, accuracy=0.7)
    checks = {v.name: v for v in judge.judge_metrics(canary, stable, judge.JudgeConfig())}
    assert checks["live_accuracy"].result == "pass"
    assert checks["label_mix"].result == "pass" and "as accurate" in checks["label_mix"].message
    unlabelled = {v.name: v for v in judge.judge_metrics(
        serve(rng, 600, **shifted), serve(rng, 600), judge.JudgeConfig())}  # fmt: skip
    assert unlabelled["label_mix"].result == "fail"
    worse = {v.name: v for v in judge.judge_metrics(
        serve(rng, 600, accuracy=0.6, **shifted), serve(rng, 600, accuracy=0.7),
        judge.JudgeConfig())}  # fmt: skip
    assert worse["label_mix"].result == "fail"


def test_a_label_mix_failure_waits_for_arriving_labels_then_stands() -> None:
    rng = np.random.default_rng(12)
    canary = serve(rng, 600, mix=(0.6, 0.1, 0.3))
    stable = serve(rng, 600, accuracy=0.7)  # labels arrive, but none yet for the canary
    checks = judge.judge_metrics(canary, stable, judge.JudgeConfig())
    by = {c.name: c.result for c in checks}
    assert by["label_mix"] == "fail" and by["live_accuracy"] == "inconclusive"
    verdict, reasons = judge.decide_step(checks, False, 0, 2)
    assert verdict == judge.HOLD and "waiting for labels" in reasons[0]
    assert judge.decide_step(checks, False, 2, 2)[0] == judge.ROLLBACK


def test_a_label_mix_failure_with_the_canary_below_stable_on_few_labels_holds() -> None:
    """Labels that do not show the canary worse, but put it below stable, do not explain a
    different mix: the step waits for more of them, then the mix failure stands."""
    canary = judge.Observed(requests=300, labels={"negative": 180, "neutral": 12, "positive": 108},
                            feedback_total=40, feedback_correct=26)  # fmt: skip
    stable = judge.Observed(requests=700, labels={"negative": 290, "neutral": 80, "positive": 330},
                            feedback_total=120, feedback_correct=84)  # fmt: skip
    checks = {c.name: c for c in judge.judge_metrics(canary, stable, judge.JudgeConfig())}
    assert checks["label_mix"].result == judge.FAIL
    assert checks["live_accuracy"].result == judge.PASS  # 0.65 vs 0.70, 40 labels: not worse
    verdict, reasons = judge.decide_step(list(checks.values()), False, 0, 2)
    assert verdict == judge.HOLD and "waiting for labels" in reasons[0]
    assert judge.decide_step(list(checks.values()), False, 2, 2)[0] == judge.ROLLBACK


def test_a_held_step_is_observed_again_over_the_whole_step() -> None:
    """A hold buys more data: the next look covers the step from its start, not a new window
    as small as the first (which would never hold enough labels)."""

    class Recording(Simulated):
        def __init__(self) -> None:
            super().__init__({})
            self.windows: list[float] = []

        def observe(self, version: str, seconds: float) -> judge.Observed:
            self.windows.append(seconds)
            n = 20 if len(self.windows) <= 2 else 400  # too little traffic at first
            return serve(self.rng, n if version == "2" else 4 * n)

    source = Recording()
    plan = steps.Plan("2", "1", steps=[50], step_seconds=30)
    record = steps.run(plan, FakeExecutor(), source, sleep=lambda s: None, progress=lambda m: None)
    assert [s.verdict for s in record.steps] == ["hold", "promote"]
    assert source.windows == [30, 30, 60, 60]
    assert [s.window_seconds for s in record.steps] == [30, 60]
    assert "Observed over the last 60s." in record.to_markdown()


def test_a_slower_canary_within_the_latency_objective_passes() -> None:
    """The relative margin alone rolls back a model that is several times slower; with a p95
    objective, only a canary that is slower *and* beyond the objective fails on latency."""
    rng = np.random.default_rng(4)
    canary, stable = serve(rng, 400, latency_ms=60.0), serve(rng, 1500, latency_ms=15.0)
    plain = {c.name: c for c in judge.judge_metrics(canary, stable, CFG)}
    assert plain["latency"].result == judge.FAIL
    slo = judge.JudgeConfig(latency_objective_s=0.25)
    within = {c.name: c for c in judge.judge_metrics(canary, stable, slo)}
    assert within["latency"].result == judge.PASS
    assert "within the p95 objective of 0.25 s" in within["latency"].message
    slow = serve(rng, 400, latency_ms=400.0)
    beyond = {c.name: c for c in judge.judge_metrics(slow, stable, slo)}
    assert beyond["latency"].result == judge.FAIL
