"""The rollout's step loop: walk the traffic steps of a `RolloutPlan`, moving traffic with an
`Executor` (a KServe InferenceService, or two local predictors behind a split) and reading what
each version served from a `MetricSource` (Prometheus); the judge (`sentiops.rollout.judge`)
decides each look, and the loop promotes or rolls back by itself, keeping the record
(`sentiops.rollout.record`).

A *look* comes at the end of every step, of every hold, and every step interval while a person
is asked: it reads what each version served since the previous look (disjoint windows, so the
judge's evidence accumulates over the whole rollout and keeps its error rate however many
looks there are). A step holds while its own traffic is too little, while a label-mix failure
waits for labels, and (with `require_accuracy_evidence`) while the last step waits for evidence
of non-inferiority; at most `max_holds` times, then the judge's `inconclusive_policy` applies:
roll back, promote with a flag, or ask a person.

Two modes, one loop (`RolloutPlan.mode`):

    canary  a step's percentage of requests is *answered* by the candidate (the rest by stable)
    shadow  a step's percentage of requests is *copied* to the candidate (a mirror): every client
            gets stable's answer, the candidate's answers are only measured; `promote` then
            switches serving to the candidate, `rollback` removes the shadow. The executor
            decides what the percentage means (`sentiops.rollout.shadow`, the local stack's
            mirror); the statistics and the decisions are the same.

At a 100 % canary step the stable version serves nothing, so the canary is compared with all of
stable's traffic of the earlier steps (the record says so).

**A person in the loop** (`RolloutPlan.approval`, `sentiops.rollout.approval`): before traffic moves
to a given step, or before promotion, the loop asks its `Gate` and waits; the record says
"waiting for approval" and how to answer. Meanwhile the canary keeps its share and the judge
keeps looking (a canary that turns out worse is rolled back without waiting); at the timeout
the plan's policy rejects, approves, or asks again. **Notifications** (`sentiops.rollout.
notify`): every hold, promotion, rollback and approval request goes to the notifier, which
never blocks the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sentiops.errors import RolloutError
from sentiops.rollout import notify
from sentiops.rollout.approval import APPROVE, PROMOTE_POINT, REJECT, Approval, Gate
from sentiops.rollout.judge import (
    ACCURACY,
    HOLD,
    INCONCLUSIVE,
    ROLLBACK,
    Evidence,
    JudgeConfig,
    Observed,
    decide_step,
    find,
    judge,
    quantile,
    score,
)
from sentiops.rollout.record import PROMOTED, ROLLED_BACK, Record, Step

CANARY, SHADOW = "canary", "shadow"
MODES = (CANARY, SHADOW)
WAITING = "waiting"  # a look's verdict while a person is asked


@dataclass
class RolloutPlan:
    """What to roll out and how: traffic steps (percent of requests answered by the canary, or
    with `mode` shadow copied to it), and where a person approves (`approval`)."""

    canary_version: str
    stable_version: str | None
    steps: list[int] = field(default_factory=lambda: [10, 50, 100])
    step_seconds: float = 600.0
    max_holds: int = 2
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    mode: str = CANARY
    approval: Approval = field(default_factory=Approval)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.steps or any(not 0 < s <= 100 for s in self.steps):
            raise ValueError(f"steps must be percentages in (0, 100], got {self.steps}")
        if list(self.steps) != sorted(self.steps):
            raise ValueError(f"steps must not decrease, got {self.steps}")
        if self.step_seconds <= 0:
            raise ValueError("step_seconds must be > 0")
        self.approval.check(self.steps)

    @property
    def full_traffic(self) -> bool:
        """The plan has a step where the canary serves alone (stable serves nothing)."""
        return self.mode == CANARY and 100 in self.steps

    def asks_a_person(self) -> bool:
        return bool(self.approval.before) or self.judge.inconclusive_policy == "hold"


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
    plan: RolloutPlan,
    executor: Executor,
    source: MetricSource,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], Any] = print,
    on_step: Callable[[Step], Any] | None = None,
    *,
    gate: Gate | None = None,
    notifier: notify.Notifier | None = None,
    record_url: str = "",
    model: str = "",
    clock: Callable[[], float] = time.monotonic,
    on_update: Callable[[Record], Any] | None = None,
) -> Record:
    """Walk the traffic steps; judge each look from `source`; promote or roll back by itself.

    With no stable version (the first deployment) there is nothing to compare: the model is
    deployed at 100 % and promoted. `gate` is where a person answers (needed when the plan
    asks one); `notifier` gets every hold, promotion, rollback and approval request with a
    link to `record_url`; `clock` must advance with `sleep`; `on_update` gets the record
    whenever it changes (a rollout in progress, for people)."""
    if plan.asks_a_person() and gate is None:
        raise RolloutError(
            "the plan waits for a person's approval but the rollout has no way to ask",
            "run it where an approval gate exists (sentiops rollout --local, the pipeline's "
            "rollout step), or drop the approval and the inconclusive policy 'hold'",
        )
    walk = _Walk(
        plan,
        executor=executor,
        source=source,
        sleep=sleep,
        clock=clock,
        progress=progress,
        gate=gate,
        notifier=notifier,
        record_url=record_url,
        model=model,
        on_step=on_step,
        on_update=on_update,
    )
    try:
        return walk.run()
    finally:
        if notifier is not None:
            walk.record.notifications = notifier.close()


class _Walk:
    """One rollout in progress: the record, the judge's evidence, where the loop stands."""

    def __init__(
        self,
        plan: RolloutPlan,
        *,
        executor: Executor,
        source: MetricSource,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        progress: Callable[[str], Any],
        gate: Gate | None,
        notifier: notify.Notifier | None,
        record_url: str,
        model: str,
        on_step: Callable[[Step], Any] | None,
        on_update: Callable[[Record], Any] | None,
    ) -> None:
        self.plan, self.executor, self.source = plan, executor, source
        self.sleep, self.clock, self.progress = sleep, clock, progress
        self.gate, self.notifier, self.record_url, self.model = gate, notifier, record_url, model
        self.on_step, self.on_update = on_step, on_update
        thresholds = asdict(plan.judge) | {
            "steps": plan.steps,
            "step_seconds": plan.step_seconds,
            "max_holds": plan.max_holds,
        }
        if plan.approval.before:
            thresholds["approval"] = asdict(plan.approval)
        self.record = Record(
            ROLLED_BACK,
            plan.canary_version,
            plan.stable_version,
            [],
            [],
            thresholds,
            _now(),
            mode=plan.mode,
        )
        self.evidence = Evidence(plan.judge, full_traffic_planned=plan.full_traffic)
        self.i, self.holds, self.deployed = 0, 0, False
        self._new_step()

    # ------------------------------------------------------------------ the walk
    def run(self) -> Record:
        plan, record = self.plan, self.record
        if plan.stable_version is None:
            self.executor.start(100)
            self.executor.promote()
            return self._finish(PROMOTED, ["first deployment: no stable version to compare with"])
        try:
            first = f"before the rollout starts ({plan.steps[0]}%)"
            if plan.approval.before == str(plan.steps[0]) and not self._approved(first):
                answer = record.approvals[-1]
                reasons = [f"not approved {first}: {answer['answer']} by {answer['by']}"]
                self._notify(
                    notify.ROLLBACK_EVENT, f"v{plan.canary_version} not rolled out", reasons
                )
                return self._finish(ROLLED_BACK, reasons)
            self.executor.start(plan.steps[0])
            self.deployed = True
            while True:
                moved = "copied to" if plan.mode == SHADOW else "to"
                self.progress(
                    f"step {self.i + 1}/{len(plan.steps)}: {plan.steps[self.i]}% {moved} "
                    f"v{plan.canary_version} for {plan.step_seconds:.0f}s"
                )
                self.sleep(plan.step_seconds)
                verdict, reasons = self._look(plan.step_seconds)
                done = self._settle(verdict, reasons)
                if done is not None:
                    return done
        except BaseException as exc:
            # whatever broke (the cluster, the metrics, Ctrl-C), never leave a canary half-rolled
            reasons = [f"rollout aborted: {type(exc).__name__}: {exc}"]
            try:
                if self.deployed:
                    self.executor.rollback()
            finally:
                self._notify(
                    notify.ROLLBACK_EVENT,
                    f"v{plan.canary_version} rolled back: the rollout broke",
                    reasons,
                )
                self._finish(ROLLED_BACK, reasons)
            raise RolloutError(
                "; ".join(reasons),
                f"the {plan.mode} was rolled back; fix the cause and run the rollout again",
                record,
            ) from exc

    def _settle(self, verdict: str, reasons: list[str]) -> Record | None:
        """Act on a look's decision; the finished record, or None to look again."""
        if verdict == HOLD:
            self.holds += 1
            self._notify(
                notify.HOLD_EVENT,
                f"v{self.plan.canary_version} held at "
                f"{self.plan.steps[self.i]}% (hold {self.holds})",
                reasons,
            )
            return None
        if verdict == ROLLBACK:
            return self._roll_back(reasons)
        if verdict == INCONCLUSIVE:
            return self._undecided(reasons)
        return self._advance()

    def _undecided(self, reasons: list[str]) -> Record | None:
        """The step's deadline passed undecided: the judge's inconclusive policy."""
        policy = self.plan.judge.inconclusive_policy
        accuracy = find(self.record.steps[-1].checks, ACCURACY)
        self.record.inconclusive = {
            "step": self.i + 1,
            "traffic": self.plan.steps[self.i],
            "policy": policy,
            "reasons": reasons,
            "needed": accuracy.needed if accuracy else None,
            "accuracy_drop_bound": accuracy.bound if accuracy else None,
        }
        if policy == "rollback":
            return self._roll_back([f"inconclusive (policy rollback): {r}" for r in reasons])
        if policy == "promote":
            self.record.flags.append(
                f"INCONCLUSIVE at step {self.i + 1}, went on by the policy "
                f"'promote': {'; '.join(reasons)}"
            )
            return self._advance()
        if not self._approved("inconclusive: " + "; ".join(reasons)):
            return self._roll_back(
                [
                    f"inconclusive, then {self.record.approvals[-1]['answer']} "
                    f"by {self.record.approvals[-1]['by']}: {r}"
                    for r in reasons
                ]
            )
        self.record.flags.append(
            f"INCONCLUSIVE at step {self.i + 1}, approved by {self.record.approvals[-1]['by']}"
        )
        return self._advance()

    def _advance(self) -> Record | None:
        """The step passed: ask a person where the plan says so, then the next step or promote."""
        plan, last = self.plan, self.i == len(self.plan.steps) - 1
        point = PROMOTE_POINT if last else str(plan.steps[self.i + 1])
        where = "before promotion" if last else f"before {point}%"
        if plan.approval.before == point and not self._approved(where):
            answer = self.record.approvals[-1]
            return self._roll_back([f"not approved {where}: {answer['answer']} by {answer['by']}"])
        if last:
            self.executor.promote()
            reasons = [f"every metric passed at {len(plan.steps)} step(s)"]
            accuracy = find(self.record.steps[-1].checks, ACCURACY)
            if accuracy is not None and accuracy.noninferior:
                reasons.append(
                    f"live accuracy shown non-inferior: the drop is at most {accuracy.bound:.3f} "
                    f"(margin {plan.judge.max_accuracy_drop})"
                )
            reasons += self.record.flags
            self._notify(notify.PROMOTE_EVENT, f"v{plan.canary_version} promoted", reasons)
            return self._finish(PROMOTED, reasons)
        self.i += 1
        self.holds = 0
        self._new_step()
        self.executor.set_traffic(plan.steps[self.i])
        return None

    def _roll_back(self, reasons: list[str]) -> Record:
        self.executor.rollback()
        self._notify(
            notify.ROLLBACK_EVENT,
            f"v{self.plan.canary_version} rolled back at {self.plan.steps[self.i]}%",
            reasons,
        )
        return self._finish(ROLLED_BACK, reasons)

    def _finish(self, decision: str, reasons: list[str]) -> Record:
        self.record.decision, self.record.reasons = decision, list(reasons)
        self.record.ended_at = _now()
        if decision == PROMOTED and self.plan.stable_version is None:
            self._notify(notify.PROMOTE_EVENT, f"v{self.plan.canary_version} deployed", reasons)
        self._updated()
        return self.record

    # ------------------------------------------------------------------ looking
    def _new_step(self) -> None:
        self.step_canary, self.step_stable, self.step_window = Observed(), Observed(), 0.0
        self.step_started = _now()
        self.last_look = self.clock()

    def _look(self, seconds: float, waiting: bool = False) -> tuple[str, list[str]]:
        """Read what each version served in the last `seconds`, judge, record the look."""
        plan, ev = self.plan, self.evidence
        traffic = plan.steps[self.i]
        full = plan.mode == CANARY and traffic == 100
        started = _now()
        canary = self.source.observe(plan.canary_version, seconds)
        stable = self.source.observe(str(plan.stable_version), seconds)
        self.last_look = self.clock()
        ev.add(canary, stable, full)
        self.step_canary, self.step_stable = self.step_canary + canary, self.step_stable + stable
        self.step_window += seconds
        checks = judge(ev, self.step_canary, self.step_stable, full)
        last = self.i == len(plan.steps) - 1
        verdict, reasons = decide_step(
            checks, last, 0 if waiting else self.holds, plan.max_holds, plan.judge
        )
        if waiting and verdict != ROLLBACK:
            verdict, reasons = WAITING, []
        baseline, stable_summary = "live", self.step_stable
        if full:
            earlier = sorted({s.traffic for s in self.record.steps if s.traffic < 100})
            baseline = (
                (
                    "all of stable's traffic of the "
                    + ", ".join(f"{t}%" for t in earlier)
                    + f" step{'s' if len(earlier) > 1 else ''}"
                )
                if earlier
                else "stable's traffic before this step (none)"
            )
            stable_summary = ev.stable
        step = Step(
            traffic,
            verdict,
            checks,
            score(checks),
            _observed_summary(self.step_canary),
            _observed_summary(stable_summary),
            started,
            _now(),
            baseline,
            self.step_window,
            plan.mode,
        )
        self.record.steps.append(step)
        if self.on_step:
            self.on_step(step)
        self._updated()
        self.progress(
            f"  -> {verdict} (score {step.score:.0f})" + "".join(f"\n     {r}" for r in reasons)
        )
        return verdict, reasons

    # ------------------------------------------------------------------ a person
    def _approved(self, where: str) -> bool:
        """Ask a person (`where`: what waits) and wait; True once approved. The canary keeps
        serving and is judged meanwhile (a rollback ends the wait: not approved)."""
        assert self.gate is not None
        plan, gate = self.plan, self.gate
        request = {
            "waiting": where,
            "canary_version": plan.canary_version,
            "stable_version": plan.stable_version,
            "mode": plan.mode,
            "since": _now(),
            "timeout_seconds": plan.approval.timeout_seconds,
            "on_timeout": plan.approval.on_timeout,
            "how": gate.how,
        }
        entry: dict[str, Any] = {**request, "answer": None, "by": None}
        self.record.approvals.append(entry)
        self.record.waiting = request
        gate.ask(request)
        self._ask(where)
        try:
            answer, by = self._wait(where)
        finally:
            gate.close()
            self.record.waiting = None
        entry.update(answer=answer, by=by, answered_at=_now())
        self.progress(f"  approval {where}: {answer} by {by}")
        self._updated()
        return answer == APPROVE

    def _ask(self, where: str, again: bool = False) -> None:
        assert self.gate is not None
        self._updated()
        text = f"v{self.plan.canary_version} waits for approval {where}" + (
            " (still waiting)" if again else ""
        )
        self.progress(f"  {text}: {self.gate.how}")
        approval = self.plan.approval
        self._notify(
            notify.APPROVAL_EVENT,
            text,
            [
                f"answer with: {self.gate.how}",
                f"on timeout ({approval.timeout_seconds:.0f}s): {approval.on_timeout}",
            ],
        )

    def _wait(self, where: str) -> tuple[str, str]:
        """(answer, by): a person's, the timeout policy's, or the judge's rollback."""
        assert self.gate is not None
        plan, approval = self.plan, self.plan.approval
        asked = self.clock()
        while True:
            answer = self.gate.answer()
            if answer is not None:
                return answer, "a person"
            now = self.clock()
            if now - asked >= approval.timeout_seconds:
                if approval.on_timeout != "hold":
                    return (APPROVE if approval.on_timeout == "approve" else REJECT), "timeout"
                asked = now
                self._ask(where, again=True)
            if self.deployed and now - self.last_look >= plan.step_seconds:
                verdict, reasons = self._look(now - self.last_look, waiting=True)
                if verdict == ROLLBACK:
                    return REJECT, "the judge: " + "; ".join(reasons)
            self.sleep(min(approval.poll_seconds, plan.step_seconds))

    # ------------------------------------------------------------------ telling people
    def _notify(self, event: str, summary: str, reasons: list[str]) -> None:
        if self.notifier is None:
            return
        plan = self.plan
        self.notifier.send(
            notify.Notification(
                event,
                summary,
                list(reasons),
                self.model,
                plan.canary_version,
                plan.stable_version,
                plan.mode,
                self.i + 1,
                plan.steps[self.i] if plan.stable_version else 100,
                self.record_url,
            )
        )

    def _updated(self) -> None:
        if self.on_update:
            self.on_update(self.record)
