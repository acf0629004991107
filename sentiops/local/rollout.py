"""Rollout executors for the embedded default: real predictors on loopback behind a traffic
split that the rollout controls, and a real Prometheus scraping them. The judge and the step
loop are the cluster's (`sentiops.rollout`); only the traffic plumbing differs.

`LocalStack` is the long-lived version (what `make run` / `make up` keep running: the serving
predictor, Prometheus, the split, replayed traffic, optionally the drift sidecar); each
`LocalStack.rollout()` starts a canary next to the serving predictor and promotes or rolls it
back. `local_rollout()` is one rollout on a stack of its own (`sentiops rollout --local`).

With `mode="shadow"` the candidate runs as a shadow (`python -m serving --shadow`) and the
split copies each step's share of predictions to it (`TrafficSplit.mirror`); clients always get
the serving predictor's answer. Promotion starts the candidate as the serving predictor (as a
cluster rolls the InferenceService to it) and stops the shadow and the old one.

A person answers a waiting rollout through `<workdir>/approval.json` (`sentiops rollout
approve|reject --workdir DIR`, `sentiops.rollout.approval.FileGate`); `progress.json` says what
waits and how to answer. Notifications link to `<workdir>/decision.json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentiops.config import MODEL_NAME
from sentiops.errors import RolloutError
from sentiops.local.stack import Predictor, Prometheus
from sentiops.local.traffic import Replay, TrafficSplit
from sentiops.models.modeldir import read_manifest
from sentiops.records import write_json
from sentiops.rollout.approval import Approval, FileGate
from sentiops.rollout.judge import JudgeConfig
from sentiops.rollout.notify import Notifier, parse_targets
from sentiops.rollout.prometheus import PrometheusSource
from sentiops.rollout.record import PROMOTED, Record
from sentiops.rollout.steps import CANARY, SHADOW, RolloutPlan, run

#: Files in the rollout's workdir: the steps of a rollout in progress, the last decision.
PROGRESS, DECISION = "progress.json", "decision.json"
#: What `progress.json` keeps of the record while the rollout runs (and `plan`: the steps).
IN_PROGRESS = ("canary_version", "stable_version", "mode", "steps", "waiting", "approvals", "flags")


class LocalExecutor:
    """Moves the split between the serving predictor and a canary it starts."""

    def __init__(self, stable: Predictor, canary: Predictor, stack: LocalStack) -> None:
        self.stable, self.canary, self.stack = stable, canary, stack
        self.serving = stable

    def start(self, traffic: int) -> None:
        self.canary.start(progress=self.stack.progress)
        self.stack.scrape([self.stable, self.canary])
        self.stack.split.route(self.canary.url, traffic)

    def set_traffic(self, traffic: int) -> None:
        self.stack.split.route(self.canary.url, traffic)

    def promote(self) -> None:
        self.stack.split.stable = self.canary.url
        self.stack.split.route("", 0)
        self.serving = self.canary
        self.stable.stop()
        self.stack.scrape([self.canary])

    def rollback(self) -> None:
        self.stack.split.route("", 0)
        self.canary.stop()
        self.stack.scrape([self.stable])


class LocalShadowExecutor:
    """Mirrors a share of the predictions to a shadow predictor; promotion starts the
    candidate as the serving predictor (`successor`, not yet started) in its place."""

    def __init__(
        self, stable: Predictor, shadow: Predictor, successor: Predictor, stack: LocalStack
    ) -> None:
        self.stable, self.shadow, self.successor, self.stack = stable, shadow, successor, stack
        self.serving = stable

    def start(self, traffic: int) -> None:
        self.shadow.start(progress=self.stack.progress)
        self.stack.scrape([self.stable, self.shadow])
        self.stack.split.mirror(self.shadow.url, traffic)

    def set_traffic(self, traffic: int) -> None:
        self.stack.split.mirror(self.shadow.url, traffic)

    def promote(self) -> None:
        self.stack.split.mirror("", 0)
        # stable serves until the candidate is ready
        self.successor.start(progress=self.stack.progress)
        self.stack.scrape([self.stable, self.shadow, self.successor])
        self.stack.split.stable = self.successor.url
        self.serving = self.successor
        self.stable.stop()
        self.shadow.stop()
        self.stack.scrape([self.successor])

    def rollback(self) -> None:
        self.stack.split.mirror("", 0)
        self.shadow.stop()
        self.stack.scrape([self.stable])


def version_of(model_dir: Path) -> str:
    return str(read_manifest(model_dir)["version"])


class LocalStack:
    """The serving side of the embedded default on loopback.

    `predictor_args` go to every predictor it starts (e.g. the inference-log URL of the drift
    sidecar and the feedback store); `extra_targets` are scraped too (the sidecar)."""

    def __init__(
        self,
        workdir: Path,
        name: str = MODEL_NAME,
        predictor_args: list[str] | None = None,
        extra_targets: list[str] | None = None,
        progress: Callable[[str], Any] = print,
    ) -> None:
        self.workdir, self.name = Path(workdir).resolve(), name
        self.predictor_args = list(predictor_args or [])
        self.extra_targets = list(extra_targets or [])
        self.progress = progress
        self.prometheus = Prometheus(self.workdir / "prometheus", list(self.extra_targets))
        self.split: TrafficSplit = TrafficSplit("")
        self.serving: Predictor | None = None
        self.replay: Replay | None = None
        self._started: list[Any] = []

    def predictor(self, model_dir: Path, version: str, role: str, args: list[str]) -> Predictor:
        return Predictor(
            Path(model_dir),
            version,
            self.workdir / f"{role}-{version}",
            self.name,
            extra_args=[*self.predictor_args, *args],
        )

    def scrape(self, predictors: list[Predictor], timeout: float = 30.0) -> None:
        """Scrape `predictors` (and the extra targets) from now on; returns once Prometheus
        has scraped each running predictor at least once, so the zeros of a new version's
        series are stored before its first request (`sentiops.metrics.model_series`)."""
        targets = [f"127.0.0.1:{p.http_port}" for p in predictors]
        self.prometheus.set_targets(targets + self.extra_targets)
        running = [t for t, p in zip(targets, predictors, strict=True) if p.running]
        self.prometheus.wait_scraped(running, timeout)

    def start(
        self, model_dir: Path, version: str | None = None, args: list[str] | None = None
    ) -> LocalStack:
        """Serve `model_dir` behind the split, with Prometheus scraping it."""
        v = version or version_of(model_dir)
        self.serving = self.predictor(model_dir, v, "serving", args or [])
        self.progress(f"serving v{v} on {self.serving.url}")
        self._started.append(self.prometheus.start())
        self.serving.start(progress=self.progress)
        self.scrape([self.serving])
        self.split.stable = self.serving.url
        self._started.append(self.split.start())
        return self

    def replay_texts(self, texts: list[str], rate: float, **kw: Any) -> Replay:
        """Replay `texts` as live traffic through the split (replaces what was replayed)."""
        if self.replay is None:
            self.replay = Replay(self.split.url, texts, rate, self.name, **kw).start()
            self.progress(f"replaying {len(texts)} texts at {rate:.0f}/s through {self.split.url}")
        else:
            self.replay.set_texts(texts)
        return self.replay

    def rollout(
        self,
        canary_dir: Path,
        steps: list[int],
        step_seconds: float,
        judge: JudgeConfig | None = None,
        *,
        max_holds: int = 2,
        canary_version: str | None = None,
        canary_args: list[str] | None = None,
        mode: str = CANARY,
        approval: Approval | None = None,
        notify: list[str] | None = None,
    ) -> Record:
        """Roll `canary_dir` out next to the serving predictor (`mode` canary: it answers a
        share of the requests; shadow: it gets a copy of them); it serves afterwards if the
        judge promotes it. `approval`: where a person answers (`sentiops rollout approve|reject
        --workdir`); `notify`: webhook targets (FORMAT=URL). The record is written to
        `<workdir>/decision.json`."""
        assert self.serving is not None, "start() the stack first"
        sv = self.serving.version
        cv = canary_version or version_of(canary_dir)
        if sv == cv:
            raise RolloutError(
                f"stable and canary are the same version {sv}",
                "roll out a different model (or give the canary its own version)",
            )
        plan = RolloutPlan(
            canary_version=cv,
            stable_version=sv,
            steps=steps,
            step_seconds=step_seconds,
            max_holds=max_holds,
            judge=judge or JudgeConfig(),
            mode=mode,
            approval=approval or Approval(),
        )
        executor = self._executor(canary_dir, cv, mode, canary_args or [])
        time.sleep(2.0)  # two scrapes of the serving predictor before the first step
        record = self._walk(plan, executor, Notifier(parse_targets(notify)) if notify else None)
        status = self.replay.status if self.replay else {}
        mirrored = f"; copies to the shadow {dict(self.split.mirrored)}" if mode == SHADOW else ""
        self.progress(
            f"requests through the split: {dict(self.split.counts)}; answers by status "
            f"{status}{mirrored}"
        )
        return record

    def _executor(
        self, canary_dir: Path, version: str, mode: str, canary_args: list[str]
    ) -> LocalExecutor | LocalShadowExecutor:
        """The predictors a rollout in `mode` starts, and what moves traffic between them."""
        assert self.serving is not None
        if mode == SHADOW:
            # the shadow counts the labels of its answers from the store every 2 s
            shadow = self.predictor(
                canary_dir,
                version,
                "shadow",
                [*canary_args, "--shadow=true", "--feedback_refresh_seconds=2"],
            )
            successor = self.predictor(canary_dir, version, "serving", canary_args)
            return LocalShadowExecutor(self.serving, shadow, successor, self)
        canary = self.predictor(canary_dir, version, "canary", canary_args)
        return LocalExecutor(self.serving, canary, self)

    def _walk(
        self,
        plan: RolloutPlan,
        executor: LocalExecutor | LocalShadowExecutor,
        notifier: Notifier | None,
    ) -> Record:
        """The plan's steps walked (progress.json while they run, decision.json after); the
        predictor that serves afterwards becomes the stack's."""

        def on_update(record: Record) -> None:  # what the console and `sentiops status` show
            now = record.to_dict()
            write_json(
                {"plan": plan.steps} | {k: now[k] for k in IN_PROGRESS}, self.workdir / PROGRESS
            )

        (self.workdir / PROGRESS).unlink(missing_ok=True)
        try:
            record = run(
                plan,
                executor,
                PrometheusSource(self.prometheus.url, self.name),
                progress=self.progress,
                gate=FileGate(self.workdir),
                notifier=notifier,
                record_url=(self.workdir / DECISION).as_uri(),
                model=self.name,
                on_update=on_update,
            )
        except RolloutError as exc:
            if isinstance(exc.record, Record):
                exc.record.write_json(self.workdir / DECISION)
            raise
        finally:
            (self.workdir / PROGRESS).unlink(missing_ok=True)
            self.serving = executor.serving
        record.write_json(self.workdir / DECISION)
        return record

    def stop(self) -> None:
        if self.replay is not None:
            self.replay.stop()
        if self.serving is not None:
            self.serving.stop()
        for item in reversed(self._started):
            item.stop()


def local_rollout(
    stable_dir: Path,
    canary_dir: Path,
    texts: list[str],
    workdir: Path,
    steps: list[int],
    step_seconds: float,
    rate: float = 50.0,
    judge: JudgeConfig | None = None,
    *,
    max_holds: int = 2,
    name: str = MODEL_NAME,
    stable_version: str | None = None,
    canary_version: str | None = None,
    progress: Callable[[str], Any] = print,
    stable_args: list[str] | None = None,
    canary_args: list[str] | None = None,
    mode: str = CANARY,
    approval: Approval | None = None,
    notify: list[str] | None = None,
) -> Record:
    """Serve `stable_dir`, replay `texts` through the split while the canary `canary_dir` is
    rolled out step by step (`mode` canary or shadow) and judged from Prometheus (`approval`
    and `notify`: as `LocalStack.rollout`); every server is stopped at the end.
    `stable_args` / `canary_args` are extra predictor flags (`python -m serving --help`): a
    rollout may change the predictor's configuration as well as, or instead of, the model."""
    sv = stable_version or version_of(stable_dir)
    cv = canary_version or version_of(canary_dir)
    if sv == cv:
        raise RolloutError(
            f"stable and canary are the same version {sv}",
            "roll out a different model (or give the canary its own version)",
        )
    stack = LocalStack(workdir, name, progress=progress)
    try:
        stack.start(stable_dir, sv, stable_args)
        stack.replay_texts(texts, rate)
        return stack.rollout(
            canary_dir,
            steps,
            step_seconds,
            judge,
            max_holds=max_holds,
            canary_version=cv,
            canary_args=canary_args,
            mode=mode,
            approval=approval,
            notify=notify,
        )
    finally:
        stack.stop()


__all__ = ["DECISION", "PROGRESS", "PROMOTED", "LocalStack", "local_rollout"]
