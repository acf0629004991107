"""Rollout executor for the embedded default: two real predictors on loopback behind a
traffic split that the rollout controls, and a real Prometheus scraping both. The judge and
the step loop are the cluster's (`sentiops.rollout`); only the traffic plumbing differs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sentiops.canary_metrics import PrometheusSource
from sentiops.config import MODEL_NAME
from sentiops.errors import RolloutError
from sentiops.localstack import Predictor, Prometheus, Replay, TrafficSplit
from sentiops.modeldir import read_manifest
from sentiops.reports import write_json
from sentiops.rollout import JudgeConfig, Plan, Record, run

#: Files in the rollout's workdir: the steps of a rollout in progress, the last decision.
PROGRESS, DECISION = "progress.json", "decision.json"


class LocalExecutor:
    """Moves the split between a running stable predictor and a canary it starts."""

    def __init__(
        self, stable: Predictor, canary: Predictor, split: TrafficSplit, prometheus: Prometheus
    ) -> None:
        self.stable, self.canary = stable, canary
        self.split, self.prometheus = split, prometheus
        self.serving = stable

    def _target(self, p: Predictor) -> str:
        return f"127.0.0.1:{p.http_port}"

    def start(self, traffic: int) -> None:
        self.canary.start()
        self.prometheus.set_targets([self._target(self.stable), self._target(self.canary)])
        self.split.route(self.canary.url, traffic)

    def set_traffic(self, traffic: int) -> None:
        self.split.route(self.canary.url, traffic)

    def promote(self) -> None:
        self.split.stable = self.canary.url
        self.split.route("", 0)
        self.serving = self.canary
        self.stable.stop()

    def rollback(self) -> None:
        self.split.route("", 0)
        self.canary.stop()


def version_of(model_dir: Path) -> str:
    return str(read_manifest(model_dir)["version"])


def local_rollout(
    stable_dir: Path,
    canary_dir: Path,
    texts: list[str],
    workdir: Path,
    steps: list[int],
    step_seconds: float,
    rate: float = 50.0,
    judge: JudgeConfig | None = None,
    max_holds: int = 2,
    name: str = MODEL_NAME,
    stable_version: str | None = None,
    canary_version: str | None = None,
    progress: Callable[[str], Any] = print,
    keep_serving: bool = False,
    stable_args: list[str] | None = None,
    canary_args: list[str] | None = None,
) -> tuple[Record, Any]:
    """Serve `stable_dir`, replay `texts` through the split while the canary `canary_dir` is
    rolled out step by step and judged from Prometheus. Returns the record and, with
    `keep_serving`, the running (split, predictor, prometheus) for the caller to stop.
    `stable_args` / `canary_args` are extra predictor flags (`python -m serving --help`): a
    rollout may change the predictor's configuration as well as, or instead of, the model."""
    sv = stable_version or version_of(stable_dir)
    cv = canary_version or version_of(canary_dir)
    if sv == cv:
        raise RolloutError(
            f"stable and canary are the same version {sv}",
            "roll out a different model (or give the canary its own version)",
        )
    stable = Predictor(stable_dir, sv, workdir / "stable", name, extra_args=stable_args or [])
    canary = Predictor(canary_dir, cv, workdir / "canary", name, extra_args=canary_args or [])
    prometheus = Prometheus(workdir / "prometheus", [])
    split = TrafficSplit(stable.url)
    replay: Replay | None = None
    started: list[Any] = []
    try:
        progress(f"serving stable v{sv} on {stable.url}")
        started.append(stable.start())
        started.append(prometheus.start())
        prometheus.set_targets([f"127.0.0.1:{stable.http_port}"])
        started.append(split.start())
        replay = Replay(split.url, texts, rate, name)
        replay.start()
        progress(f"replaying {len(texts)} texts at {rate:.0f}/s through {split.url}")
        executor = LocalExecutor(stable, canary, split, prometheus)
        started.append(canary)
        plan = Plan(cv, sv, steps, step_seconds, max_holds, judge or JudgeConfig())
        time.sleep(2 * 1.0)  # two scrapes of the stable predictor before the first step
        steps_so_far: list[Any] = []

        def on_step(step: Any) -> None:  # what the console and `sentiops status` show live
            steps_so_far.append(asdict(step))
            write_json({"canary_version": cv, "stable_version": sv, "plan": steps,
                        "steps": steps_so_far}, workdir / PROGRESS)  # fmt: skip

        (workdir / PROGRESS).unlink(missing_ok=True)
        try:
            record = run(plan, executor, PrometheusSource(prometheus.url, name),
                         progress=progress, on_step=on_step)  # fmt: skip
        except RolloutError as exc:
            if isinstance(exc.record, Record):
                exc.record.write_json(workdir / DECISION)
            raise
        finally:
            (workdir / PROGRESS).unlink(missing_ok=True)
        record.write_json(workdir / DECISION)
        record_counts = dict(split.counts)
        progress(f"requests through the split: {record_counts}; answers by status {replay.status}")
        if keep_serving:
            return record, (split, executor.serving, prometheus, replay)
        return record, None
    finally:
        if not keep_serving:
            if replay is not None:
                replay.stop()
            for item in reversed(started):
                item.stop()
