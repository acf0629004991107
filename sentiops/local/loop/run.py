"""The sequence of the loop's steps (`make run`, `sentiops loop`): train -> gate -> serve ->
canary -> shift -> drift -> labels -> retrain -> gate -> canary -> report, on the embedded
default with real servers on loopback (the steps are listed in `sentiops.local.loop`)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentiops.config import EVAL_SAMPLE_ENV, MODEL_NAME, REGISTERED_MODEL, SEED, get_settings
from sentiops.errors import StackError
from sentiops.local.loop.annotators import Annotators
from sentiops.local.loop.config import ROUND_TRIP_TEXTS, LoopConfig
from sentiops.local.loop.story import (
    Story,
    estimate_line,
    first_window_after,
    improvement_p,
    labelled_estimate,
    live_accuracy_by_domain,
    verdict,
)


def _truth(datasets: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """text -> ground-truth label, text -> dataset, for the built-in datasets."""
    from sentiops.data.datasets import LABEL, TEXT, load

    truth: dict[str, str] = {}
    domain: dict[str, str] = {}
    for name in datasets:
        df = load([name])
        for text, label in zip(df[TEXT], df[LABEL], strict=True):
            truth.setdefault(str(text), str(label))
            domain.setdefault(str(text), name)
    return truth, domain


def test_texts(dataset: str, seed: int = SEED) -> list[str]:
    from sentiops.data.datasets import TEXT
    from sentiops.data.prepare import labelled_split
    from sentiops.params import DataConfig

    test, _ = labelled_split(DataConfig(data=[dataset], seed=seed), "test")
    return [str(t) for t in test[TEXT]]


def _wait(check: Callable[[], Any], timeout: float, what: str, stack: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    raise StackError(
        f"timed out after {timeout:.0f}s waiting for {what}",
        "the logs of every server are under the loop's workdir",
    )


def _metric(url: str, name: str, **labels: str) -> float | None:
    import re

    import httpx

    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except Exception:  # noqa: BLE001 - a server still starting
        return None
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def run_loop(
    cfg: LoopConfig | None = None,
    workdir: Path | None = None,
    progress: Callable[[str], Any] = print,
    show: Callable[[str, Any], Any] | None = None,
) -> dict[str, Any]:
    """The whole story; returns what happened (also written to <workdir>/story.json).
    `progress` gets one line per event, `show(kind, data)` the tables (`decision`,
    `rollout`, `accuracy`). Every server of the loop (and this process) samples predictions
    for evaluation at `cfg.sample_share`."""
    cfg = cfg or LoopConfig()
    before = os.environ.get(EVAL_SAMPLE_ENV)
    os.environ[EVAL_SAMPLE_ENV] = str(cfg.sample_share)
    try:
        return _run_loop(cfg, workdir, progress, show)
    finally:
        if before is None:
            os.environ.pop(EVAL_SAMPLE_ENV, None)
        else:
            os.environ[EVAL_SAMPLE_ENV] = before


def _run_loop(
    cfg: LoopConfig,
    workdir: Path | None,
    progress: Callable[[str], Any],
    show: Callable[[str, Any], Any] | None,
) -> dict[str, Any]:
    from sentiops.local.rollout import LocalStack
    from sentiops.local.stack import DriftSidecar, StackTokens
    from sentiops.pipeline.run import local_arguments, run_local
    from sentiops.registry import lifecycle as registry
    from sentiops.rollout.judge import JudgeConfig
    from sentiops.rollout.settle import settle
    from sentiops.store.storage import local_model

    settings = get_settings()
    work = (workdir or settings.home / "loop").resolve()
    work.mkdir(parents=True, exist_ok=True)
    store = str(settings.local_store)
    show = show or (lambda kind, data: None)
    story = Story()

    # 1 ------------------------------------------------------------------------- train
    t = time.monotonic()
    progress(f"[1/8] train: the pipeline on {', '.join(cfg.datasets)}, baseline first (kfp.local)")
    first = run_local(
        local_arguments(
            settings,
            model_type="tfidf-logreg",
            champion="none",
            datasets=list(cfg.datasets),
            hyperparameters=cfg.baseline_hyperparameters,
            seed=cfg.seed,
        )
    )
    show("decision", (first.decision, "run 1: the baseline (first champion)"))
    if not first.approved or not first.storage_uri:
        raise StackError("the baseline did not pass the first-champion bar", str(first.run_dir))
    progress(f"[1/8] train: {cfg.challenger_type} vs the champion")
    second = run_local(
        local_arguments(
            settings,
            model_type=cfg.challenger_type,
            base_model=cfg.base_model,
            champion="",
            datasets=list(cfg.datasets),
            hyperparameters=cfg.hyperparameters,
            seed=cfg.seed,
        ),
        promote=False,
    )
    show("decision", (second.decision, f"run 2: {cfg.challenger_type} vs the champion"))
    candidate_version = (second.decision.get("challenger") or {}).get("registry_version")
    story.add(
        "train",
        t,
        baseline=first.decision["challenger"],
        challenger=second.decision["challenger"],
        approved=second.approved,
    )

    # 2 ------------------------------------------------------------------------- serve
    t = time.monotonic()
    truth, domain = _truth([*cfg.datasets, cfg.dataset, cfg.shifted])
    exe = Path(sys.executable).with_name("sentiops")
    hyper = json.dumps(cfg.hyperparameters).replace("{", "{{").replace("}", "}}")
    retrain = (
        f"{shlex.quote(str(exe))} pipeline run --local --no-promote "
        f"--model-type {cfg.challenger_type} --base-model {cfg.retrain_base_model} "
        f"--hyperparameters {shlex.quote(hyper)} --set seed={cfg.seed} {{data_args}}"
    )
    tokens = StackTokens(work)  # writes need a token: labels and the inference log
    sidecar = DriftSidecar(
        work / "drift",
        store,
        [
            *tokens.sidecar_args(),
            "--window-size",
            str(cfg.window),
            "--min-window",
            str(min(cfg.window, 30)),
            "--window-seconds",
            "30",
            "--consecutive",
            str(cfg.consecutive),
            "--flush-seconds",
            "2",
            "--labelling-per-window",
            str(cfg.window),
            "--retrain-enabled",
            "true",
            "--retrain-mode",
            "command",
            "--retrain-command",
            retrain,
            "--retrain-datasets",
            ",".join(cfg.datasets),
            "--retrain-cooldown",
            "3600",
            "--retrain-min-labels",
            str(cfg.min_labels),
        ],
    )
    stack = LocalStack(
        work / "rollout",
        MODEL_NAME,
        predictor_args=[
            f"--logger_url={sidecar.url}/",
            f"--feedback_store={store}",
            *tokens.predictor_args(),
        ],
        extra_targets=[sidecar.target],
        progress=progress,
    )
    annotators: Annotators | None = None
    earlier_triggers = set(_triggers(store))  # a trigger may come any time after this
    try:
        progress("[2/8] serve: the champion, the drift sidecar, Prometheus, the traffic split")
        sidecar.start()
        # every server names a model by its registry version: the store's layout
        # (<store>/models/<name>/<version>), the sidecar's detectors and the labels agree
        champion_version = (first.decision.get("challenger") or {}).get("registry_version")
        stack.start(local_model(first.storage_uri), champion_version)
        annotators = Annotators(stack.split.url, truth, headers=tokens.header).start()
        # the evaluation sample is labelled from the start, so the first canary is judged on
        # live accuracy too (labels outrank the label-mix proxy: a better model answers with a
        # different mix, measured JS 0.07-0.12 against the baseline's)
        annotators.labelling = True
        tweets = test_texts(cfg.dataset, cfg.seed)
        stack.replay_texts(tweets, cfg.rate, on_response=annotators.on_response)
        assert stack.serving is not None
        from sentiops.local.stack import round_trip

        show("round_trip", (round_trip(stack.split.url, ROUND_TRIP_TEXTS), stack.serving.version))
        story.add(
            "serve",
            t,
            champion=stack.serving.version,
            prometheus=stack.prometheus.url,
            split=stack.split.url,
            sidecar=sidecar.url,
        )

        # 3 --------------------------------------------------------------------- canary
        t = time.monotonic()
        # on 2 shared cores a predictor's p95 moves with whatever else runs (the sidecar's
        # window tests, a training run): the loop's judge allows p95 twice stable's, and any
        # p95 within 250 ms (the transformer replacing the TF-IDF baseline is several times
        # slower: on a busy machine 70 vs 24 ms rolled a better model back); the cluster's
        # default margin is 0.5 (the rollout ConfigMap sets it)
        judge = JudgeConfig(
            min_requests=30, min_feedback=30, max_latency_increase=1.0, latency_objective_s=0.25
        )

        def canary(chapter: str, started: float, uri: str, version: str) -> None:
            """Roll `version` out step by step, settle the registry, tell the story."""
            record = stack.rollout(
                local_model(uri), cfg.steps, cfg.step_seconds, judge, canary_version=version
            )
            show("rollout", record)
            settled = settle(record, version, REGISTERED_MODEL)
            story.add(
                chapter, started, decision=record.decision, reasons=record.reasons, registry=settled
            )

        if second.approved and second.storage_uri:
            progress("[3/8] canary: the candidate under replayed tweets")
            canary("canary", t, second.storage_uri, str(candidate_version))
        else:
            story.add("canary", t, decision="skipped: the gate rejected the candidate")
        before = stack.serving.version

        # 4 --------------------------------------------------------------------- shift
        t = time.monotonic()
        progress(
            f"[4/8] shift: annotators keep labelling the random evaluation sample "
            f"({cfg.sample_share:.0%} of live predictions); "
            f"tweets for a while, then {cfg.shifted}"
        )
        time.sleep(max(8.0, 200 / cfg.rate))
        rng = random.Random(cfg.seed)
        pool = [t for t, d in domain.items() if d == cfg.shifted]
        pool = rng.sample(pool, min(cfg.shifted_texts + cfg.unseen_texts, len(pool)))
        shifted, unseen = pool[: cfg.shifted_texts], pool[cfg.shifted_texts :]
        shift_at = _utc_now()
        stack.replay_texts(shifted, cfg.rate)
        window = _wait(
            lambda: first_window_after(_status(sidecar.url), before, shift_at),
            cfg.timeout,
            "the first window of the new traffic",
        )
        progress("  " + estimate_line(before, cfg.shifted, window))
        story.add(
            "shift",
            t,
            replayed=cfg.shifted,
            texts=len(shifted),
            unseen_later=len(unseen),
            estimated_right_after=window["estimate"],
        )

        # 5 --------------------------------------------------------------------- drift
        t = time.monotonic()
        progress("[5/8] drift: waiting for the sidecar to flag it")
        _wait(
            lambda: (
                (_metric(sidecar.url, "sentiops_drift_detected", model_version=before) or 0) >= 1
            ),
            cfg.timeout,
            "drift on the serving model",
        )
        p_values = {
            test: _metric(sidecar.url, "sentiops_drift_p_value", model_version=before, test=test)
            for test in ("combined", "embedding", "label_mix", "confidence")
        }
        progress(f"  drift flagged for v{before}: p-values {p_values}")
        queued = _wait(lambda: _labelling_rows(store), cfg.timeout, "the labelling queue")
        n = annotators.label_queue(queued)
        progress(f"  labelling queue: {len(queued)} texts; annotators label {n}")
        story.add("drift", t, model_version=before, p_values=p_values, queued=len(queued))
        show("accuracy", (live_accuracy_by_domain(store, domain), "live accuracy so far"))
        progress(
            "  "
            + estimate_line(
                before, cfg.shifted, window, labelled_estimate(store, domain, before, cfg.shifted)
            )
        )

        # 6 --------------------------------------------------------------------- retrain
        t = time.monotonic()
        progress("[6/8] retrain: the sidecar triggers a run once enough new labels exist")

        def new_trigger() -> list[dict[str, Any]]:
            annotators.label_queue(_labelling_rows(store))  # the queue keeps growing
            return [_read_json(u) for u in _triggers(store) if u not in earlier_triggers]

        triggers = _wait(new_trigger, cfg.timeout, "a retraining trigger")
        trigger = triggers[0]
        progress(f"  triggered: {trigger.get('message')}")
        if stack.replay:  # make room on the CPU for the training run
            stack.replay.set_rate(min(cfg.rate, 5.0))
        old_candidate = registry.version_of(registry.CANDIDATE)
        _wait(lambda: _run_finished(store), cfg.timeout * 2, "the retraining run")
        new_candidate = registry.version_of(registry.CANDIDATE)
        retrained = registry.latest_version()  # the run's model, approved or not
        gate = registry.tags_of(retrained) if retrained else {}
        approved = bool(
            new_candidate
            and new_candidate != old_candidate
            and new_candidate == retrained
            and gate.get("gate.approved") == "true"
        )
        retrain_facts = {
            "trigger": trigger.get("message"),
            "datasets": trigger.get("datasets"),
            "labelled_rows": trigger.get("labelled_rows"),
            "candidate": new_candidate if approved else None,
            "gate": {k: v for k, v in gate.items() if k.startswith("gate.")},
        }
        story.add("retrain", t, **retrain_facts)
        progress(
            f"  retraining run done: gate {'APPROVED' if approved else 'REJECTED'} "
            f"(registry v{retrained}); {gate.get('gate.reasons', '')}"
        )

        # 7 --------------------------------------------------------------------- canary 2
        t = time.monotonic()
        after = before
        if approved and new_candidate:
            uri = registry.tags_of(new_candidate).get(registry.STORAGE_URI_TAG)
            progress(
                f"[7/8] canary: the retrained v{new_candidate} under {cfg.shifted} traffic, "
                "judged with live accuracy from the labels"
            )
            if stack.replay:  # new traffic is new text: none of it was labelled or trained on
                stack.replay.set_texts(unseen or shifted)
                stack.replay.set_rate(cfg.rate)
            canary("canary-2", t, str(uri), new_candidate)
            after = stack.serving.version
        else:
            story.add("canary-2", t, decision="skipped: no approved retrained candidate")
        if after != before:  # enough labels of the new champion's answers to compare
            progress(f"  collecting {cfg.after_labels} labels of v{after} on {cfg.shifted}")
            with contextlib.suppress(StackError):
                _wait(
                    lambda: _labels_of(store, domain, after, cfg.shifted) >= cfg.after_labels,
                    cfg.timeout / 3,
                    "labels of the new champion",
                )
        time.sleep(max(6.0, 100 / cfg.rate))  # the last labels flushed

        # 8 --------------------------------------------------------------------- report
        t = time.monotonic()
        table = live_accuracy_by_domain(store, domain)
        show(
            "accuracy",
            (
                table,
                f"live accuracy by model version and domain (v{before} before, v{after} after)",
            ),
        )
        on_shifted = {r["model_version"]: r for r in table if r["domain"] == cfg.shifted}
        show(
            "verdict",
            verdict(on_shifted.get(before), on_shifted.get(after), cfg.shifted, judge.alpha),
        )
        estimates = {v: labelled_estimate(store, domain, v, cfg.shifted) for v in {before, after}}
        for v, labelled in sorted(estimates.items()):
            if labelled is not None:
                show("verdict", estimate_line(v, cfg.shifted, None, labelled))
        story.add(
            "report",
            t,
            live_accuracy=table,
            shifted_before=on_shifted.get(before),
            shifted_after=on_shifted.get(after),
            improvement_p=(
                improvement_p(on_shifted[before], on_shifted[after])
                if before in on_shifted and after in on_shifted and after != before
                else None
            ),
            labels_sent=annotators.sent,
            estimated_vs_realized=estimates,
        )
    finally:
        progress("stopping every server")
        if annotators is not None:
            annotators.stop()
        stack.stop()
        sidecar.stop()
    result = story.to_dict()
    (work / "story.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _utc_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _status(url: str) -> dict[str, Any]:
    """The drift sidecar's /status ({} while it does not answer)."""
    import httpx

    try:
        return dict(httpx.get(f"{url}/status", timeout=10).json())
    except Exception:  # noqa: BLE001 - a sidecar still starting: asked again
        return {}


def _labels_of(store: str, domain: dict[str, str], version: str, dataset: str) -> int:
    """Random-sample labels stored for `version`'s answers on `dataset`."""
    rows = live_accuracy_by_domain(store, domain)
    return next(
        (r["labels"] for r in rows if r["model_version"] == version and r["domain"] == dataset), 0
    )


def _labelling_rows(store: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    from sentiops.store import layout
    from sentiops.store.storage import get_file

    rows: list[dict[str, Any]] = []
    for f in layout.list_files(layout.join(store, layout.LABELLING)):
        if f.uri.endswith(".parquet"):
            rows += pq.read_table(get_file(f.uri), columns=["id", "text"]).to_pylist()
    return rows


def _triggers(store: str) -> list[str]:
    from sentiops.store import layout

    return [f.uri for f in layout.list_files(layout.join(store, layout.RETRAIN, "triggers"))]


def _read_json(uri: str) -> dict[str, Any]:
    from sentiops.store import layout

    return dict(json.loads(layout.get_bytes(uri)))


def _run_finished(store: str) -> bool:
    from sentiops.store import layout

    return not Path(layout.join(store, layout.RETRAIN, "active.json")).exists()
