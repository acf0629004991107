"""The sequence of the loop's steps (`make run`, `sentiops loop`): train -> gate -> serve ->
canary -> shift -> drift -> labels -> retrain -> gate -> canary -> report, on the embedded
default with real servers on loopback (the steps are listed in `sentiops.local.loop`).

One function per chapter (`train`, `serve`, `canary`, `shift`, `drift`, `retrain`,
`canary_2`, `report`), each reading and extending one `LoopState`; `run_loop` calls them in
order and stops every server at the end, also on errors and Ctrl-C. Every wait says what it
waits for and how it goes (`sentiops.local.loop.progress`), and so does every training run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentiops.config import EVAL_SAMPLE_ENV, REGISTERED_MODEL, SEED, get_settings
from sentiops.errors import PipelineError, StackError
from sentiops.labelling.studio import label_studio_executable
from sentiops.local.loop.annotators import Annotators, StudioAnnotators
from sentiops.local.loop.config import ROUND_TRIP_TEXTS, LoopConfig
from sentiops.local.loop.progress import (
    LogTail,
    TrainingLog,
    following,
    never_silent,
    wait_for,
)
from sentiops.local.loop.story import (
    Story,
    estimate_line,
    first_window_after,
    improvement_p,
    labelled_estimate,
    live_accuracy_by_domain,
    verdict,
)
from sentiops.local.stack import round_trip
from sentiops.pipeline.run import local_arguments, run_local
from sentiops.registry import lifecycle as registry
from sentiops.store import layout

Show = Callable[[str, Any], Any]


def _truth(datasets: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """text -> ground-truth label, text -> dataset, for the built-in datasets."""
    from sentiops.data.datasets import LABEL, TEXT, load  # lazy: pulls pandas

    truth: dict[str, str] = {}
    domain: dict[str, str] = {}
    for name in datasets:
        df = load([name])
        for text, label in zip(df[TEXT], df[LABEL], strict=True):
            truth.setdefault(str(text), str(label))
            domain.setdefault(str(text), name)
    return truth, domain


def test_texts(dataset: str, seed: int = SEED) -> list[str]:
    from sentiops.data.datasets import TEXT  # lazy: pulls pandas
    from sentiops.data.prepare import labelled_split  # lazy: drift env: pydantic 2
    from sentiops.params import DataConfig  # lazy: drift env: pydantic 2

    test, _ = labelled_split(DataConfig(data=[dataset], seed=seed), "test")
    return [str(t) for t in test[TEXT]]


def _metric(url: str, name: str, **labels: str) -> float | None:
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


# ------------------------------------------------------------------------------ the state
@dataclass(kw_only=True)
class LoopState:
    """What the chapters share: the knobs, where things are, the servers, the story, and what
    each chapter found out for the next ones."""

    cfg: LoopConfig
    work: Path
    store: str
    progress: Callable[[str], Any]
    show: Show
    story: Story = field(default_factory=Story)
    truth: dict[str, str] = field(default_factory=dict)  # text -> label (every dataset)
    domain: dict[str, str] = field(default_factory=dict)  # text -> dataset
    wiring: Any = None  # sentiops.local.wiring.Wiring, from `serve` on
    annotators: Annotators | StudioAnnotators | None = None
    judge: Any = None  # the canary judge's JudgeConfig
    first: Any = None  # the baseline's LocalRun
    second: Any = None  # the challenger's LocalRun
    earlier_triggers: set[str] = field(default_factory=set)
    before: str = ""  # the version serving when the traffic shifts
    after: str = ""  # ... and at the end
    shifted: list[str] = field(default_factory=list)  # texts of the new domain
    unseen: list[str] = field(default_factory=list)  # ... others, for the second canary
    window: dict[str, Any] | None = None  # the sidecar's first window of the new traffic
    approved: bool = False  # the retrained model passed its gate
    candidate: str | None = None  # ... and is the registry's candidate

    @property
    def stack(self) -> Any:
        return self.wiring.stack

    def say(self, line: str) -> None:
        self.progress(line)

    def wait(
        self,
        check: Callable[[], Any],
        what: str,
        *,
        timeout: float | None = None,
        seen: Callable[[], str] | None = None,
    ) -> Any:
        """`wait_for` with the loop's timeout, saying every ~10 s what it has seen."""
        self.say(f"  waiting for {what}")
        return wait_for(check, timeout or self.cfg.timeout, what, progress=self.progress, seen=seen)

    def stop(self) -> None:
        self.say("stopping every server")
        if self.annotators is not None:
            self.annotators.stop()
        if self.wiring is not None:
            self.wiring.stop()


def run_loop(
    cfg: LoopConfig | None = None,
    workdir: Path | None = None,
    progress: Callable[[str], Any] = print,
    show: Show | None = None,
) -> dict[str, Any]:
    """The whole story; returns what happened (also written to <workdir>/story.json).
    `progress` gets one line per event, `show(kind, data)` the tables (`decision`,
    `rollout`, `accuracy`). Every server of the loop (and this process) samples predictions
    for evaluation at `cfg.sample_share` (`cfg.studio_sample_share` when the annotators label
    in Label Studio)."""
    cfg = cfg or LoopConfig()
    before = os.environ.get(EVAL_SAMPLE_ENV)
    os.environ[EVAL_SAMPLE_ENV] = str(sample_share(cfg))
    try:
        return _run_loop(cfg, workdir, progress, show)
    finally:
        if before is None:
            os.environ.pop(EVAL_SAMPLE_ENV, None)
        else:
            os.environ[EVAL_SAMPLE_ENV] = before


def sample_share(cfg: LoopConfig) -> float:
    """The share of live predictions in the random evaluation sample."""
    if label_studio_executable() is None:
        return cfg.sample_share
    return min(cfg.sample_share, cfg.studio_sample_share)


def _run_loop(
    cfg: LoopConfig,
    workdir: Path | None,
    progress: Callable[[str], Any],
    show: Show | None,
) -> dict[str, Any]:
    settings = get_settings()
    work = (workdir or settings.home / "loop").resolve()
    work.mkdir(parents=True, exist_ok=True)
    s = LoopState(
        cfg=cfg,
        work=work,
        store=str(settings.local_store),
        progress=progress,
        show=show or (lambda kind, data: None),
    )
    train(s)
    try:
        for chapter in (serve, canary, shift, drift, retrain, canary_2, report):
            chapter(s)
    finally:
        s.stop()
    result = s.story.to_dict()
    (work / "story.json").write_text(json.dumps(result, indent=2, default=str))
    return result


# ------------------------------------------------------------------------------ 1 train
def train(s: LoopState) -> None:
    """The pipeline twice: the TF-IDF baseline becomes the first champion, then the
    challenger is trained and gated against it (the candidate)."""
    cfg, t = s.cfg, time.monotonic()
    s.say(f"[1/8] train: the pipeline on {', '.join(cfg.datasets)}, baseline first (kfp.local)")
    s.first = _pipeline(
        s,
        model_type="tfidf-logreg",
        champion="none",
        datasets=list(cfg.datasets),
        hyperparameters=cfg.baseline_hyperparameters,
        seed=cfg.seed,
    )
    s.show("decision", (s.first.decision, "run 1: the baseline (first champion)"))
    if not s.first.approved or not s.first.storage_uri:
        raise StackError("the baseline did not pass the first-champion bar", str(s.first.run_dir))
    s.say(f"[1/8] train: {cfg.challenger_type} vs the champion")
    s.second = _pipeline(
        s,
        promote=False,
        model_type=cfg.challenger_type,
        base_model=cfg.base_model,
        champion="",
        datasets=list(cfg.datasets),
        hyperparameters=cfg.hyperparameters,
        seed=cfg.seed,
    )
    s.show("decision", (s.second.decision, f"run 2: {cfg.challenger_type} vs the champion"))
    s.story.add(
        "train",
        t,
        baseline=s.first.decision["challenger"],
        challenger=s.second.decision["challenger"],
        approved=s.second.approved,
    )


def _pipeline(s: LoopState, *, promote: bool = True, **arguments: Any) -> Any:
    """One run of the pipeline in this process (kfp.local), its task output in a log that is
    followed while it runs: one line of progress every ~10 s."""
    settings = get_settings()
    root = settings.home / "pipeline-runs"
    root.mkdir(parents=True, exist_ok=True)
    log = root / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    s.say(f"  task output (training progress included): tail -f {log}")
    args = local_arguments(settings, **arguments)
    with (
        open(log, "a", buffering=1) as fh,
        _stdout_of_this_thread(fh),
        following(log, s.progress, str(arguments.get("model_type", ""))),
    ):
        try:
            return run_local(args, verbose=True, promote=promote)
        except PipelineError as exc:
            raise PipelineError(exc.message, f"the task output is in {log}") from exc


class _ThreadRouter(io.TextIOBase):
    """sys.stdout while a pipeline runs here: what the thread running it writes (kfp.local's
    task output) goes to its log, what other threads write (the progress lines) where
    stdout went before."""

    def __init__(self, log: Any, other: Any) -> None:
        self.log, self.other, self.owner = log, other, threading.get_ident()

    def _target(self) -> Any:
        return self.log if threading.get_ident() == self.owner else self.other

    def write(self, text: str) -> int:
        self._target().write(text)
        return len(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return bool(self._target().isatty())

    def fileno(self) -> int:
        return int(self._target().fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._target(), "encoding", "utf-8"))


@contextlib.contextmanager
def _stdout_of_this_thread(log: Any) -> Iterator[None]:
    router = _ThreadRouter(log, sys.stdout)
    with contextlib.redirect_stdout(router):
        yield


# ------------------------------------------------------------------------------ 2 serve
def serve(s: LoopState) -> None:
    """The champion behind the traffic split with the drift sidecar and Prometheus (and Label
    Studio with the labelling receiver when installed); the annotators; tweets replayed."""
    from sentiops.local.wiring import Wiring  # lazy: pulls scipy
    from sentiops.store.storage import local_model  # lazy: pulls minio

    cfg, t = s.cfg, time.monotonic()
    s.truth, s.domain = _truth([*cfg.datasets, cfg.dataset, cfg.shifted])
    s.wiring = Wiring.build(
        s.work,
        s.store,
        sidecar_args=_sidecar_args(cfg),
        label_studio=get_settings().home / "labelstudio",
        # its every round reads every task back (~10 s of Label Studio's time at 4,000
        # tasks): less often than `make up`, so the annotators' own requests get through
        labelling_interval=15.0,
        progress=s.progress,
    )
    s.earlier_triggers = set(_triggers(s.store))  # a trigger may come any time after this
    s.say("[2/8] serve: the champion, the drift sidecar, Prometheus, the traffic split")
    # every server names a model by its registry version: the store's layout
    # (<store>/models/<name>/<version>), the sidecar's detectors and the labels agree
    champion = (s.first.decision.get("challenger") or {}).get("registry_version")
    s.wiring.start(local_model(s.first.storage_uri), champion)
    if s.wiring.start_labelling():
        studio = s.wiring.studio
        s.annotators = StudioAnnotators(
            studio.studio(),
            s.truth,
            receiver=s.wiring.receiver.url,
            round_every=s.wiring.receiver.interval,
        ).start()
        s.say(f"  annotators label through Label Studio at {studio.url}")
    else:
        s.annotators = Annotators(s.stack.split.url, s.truth, headers=s.wiring.tokens.header)
        s.annotators.start()
        s.say("  Label Studio not installed: annotators post labels to the feedback API")
    # the evaluation sample is labelled from the start, so the first canary is judged on
    # live accuracy too (labels outrank the label-mix proxy: a better model answers with a
    # different mix, measured JS 0.07-0.12 against the baseline's)
    s.annotators.labelling = True
    s.stack.replay_texts(
        test_texts(cfg.dataset, cfg.seed), cfg.rate, on_response=s.annotators.on_response
    )
    assert s.stack.serving is not None
    s.show("round_trip", (round_trip(s.stack.split.url, ROUND_TRIP_TEXTS), s.stack.serving.version))
    s.story.add(
        "serve",
        t,
        champion=s.stack.serving.version,
        prometheus=s.stack.prometheus.url,
        split=s.stack.split.url,
        sidecar=s.wiring.sidecar.url,
        labelling=s.wiring.studio.url if s.wiring.studio else "feedback API",
    )


def _sidecar_args(cfg: LoopConfig) -> list[str]:
    """The drift sidecar's flags: the loop's windows, and a retraining run (the pipeline,
    its output followed by the loop: `--verbose`) once drift persists and labels exist."""
    exe = Path(sys.executable).with_name("sentiops")
    hyper = json.dumps(cfg.hyperparameters).replace("{", "{{").replace("}", "}}")
    retrain = (
        f"{shlex.quote(str(exe))} pipeline run --local --no-promote --verbose "
        f"--model-type {cfg.challenger_type} --base-model {cfg.retrain_base_model} "
        f"--hyperparameters {shlex.quote(hyper)} --set seed={cfg.seed} {{data_args}}"
    )
    flags = {
        "--window-size": cfg.window,
        "--min-window": min(cfg.window, 30),
        "--window-seconds": 30,
        "--consecutive": cfg.consecutive,
        "--flush-seconds": 2,
        "--labelling-per-window": cfg.window,
        "--retrain-enabled": "true",
        "--retrain-mode": "command",
        "--retrain-command": retrain,
        "--retrain-datasets": ",".join(cfg.datasets),
        "--retrain-cooldown": 3600,
        "--retrain-min-labels": cfg.min_labels,
    }
    return [str(x) for flag, value in flags.items() for x in (flag, value)]


# ------------------------------------------------------------------------------ 3 canary
def _judge() -> Any:
    """On 2 shared cores a predictor's p95 moves with whatever else runs (the sidecar's
    window tests, a training run): the loop's judge allows p95 twice stable's, and any p95
    within 250 ms (the transformer replacing the TF-IDF baseline is several times slower: on
    a busy machine 70 vs 24 ms rolled a better model back); the cluster's default margin is
    0.5 (the rollout ConfigMap sets it)."""
    from sentiops.rollout.judge import JudgeConfig  # lazy: pulls scipy

    return JudgeConfig(
        min_requests=30, min_feedback=30, max_latency_increase=1.0, latency_objective_s=0.25
    )


def _roll_out(s: LoopState, chapter: str, started: float, uri: str, version: str) -> None:
    """Roll `version` out step by step, settle the registry, tell the story."""
    from sentiops.rollout.settle import settle  # lazy: pulls scipy
    from sentiops.store.storage import local_model  # lazy: pulls minio

    cfg = s.cfg
    what = f"rolling out v{version} (its predictor starting, Prometheus scraping it, the steps)"
    with never_silent(s.progress, what) as say:
        s.stack.progress = say  # the rollout's own lines, and ours when it says nothing
        try:
            record = s.stack.rollout(
                local_model(uri), cfg.steps, cfg.step_seconds, s.judge, canary_version=version
            )
        finally:
            s.stack.progress = s.progress
    s.show("rollout", record)
    settled = settle(record, version, REGISTERED_MODEL)
    s.story.add(
        chapter, started, decision=record.decision, reasons=record.reasons, registry=settled
    )


def canary(s: LoopState) -> None:
    """The gated candidate rolled out under replayed tweets, judged from Prometheus."""
    t = time.monotonic()
    s.judge = _judge()
    second = s.second
    if second.approved and second.storage_uri:
        s.say("[3/8] canary: the candidate under replayed tweets")
        version = (second.decision.get("challenger") or {}).get("registry_version")
        _roll_out(s, "canary", t, second.storage_uri, str(version))
    else:
        s.story.add("canary", t, decision="skipped: the gate rejected the candidate")
    s.before = s.stack.serving.version


# ------------------------------------------------------------------------------ 4 shift
def shift(s: LoopState) -> None:
    """Tweets for a while, then texts of another domain: the sidecar's first window of the
    new traffic estimates the accuracy before any label of it."""
    cfg, t = s.cfg, time.monotonic()
    s.say(
        f"[4/8] shift: annotators keep labelling the random evaluation sample "
        f"({sample_share(cfg):.0%} of live predictions); "
        f"tweets for a while, then {cfg.shifted}"
    )
    time.sleep(max(8.0, 200 / cfg.rate))
    rng = random.Random(cfg.seed)
    pool = [x for x, d in s.domain.items() if d == cfg.shifted]
    pool = rng.sample(pool, min(cfg.shifted_texts + cfg.unseen_texts, len(pool)))
    s.shifted, s.unseen = pool[: cfg.shifted_texts], pool[cfg.shifted_texts :]
    shift_at = _utc_now()
    s.stack.replay_texts(s.shifted, cfg.rate)
    sidecar = s.wiring.sidecar.url
    s.window = s.wait(
        lambda: first_window_after(_status(sidecar), s.before, shift_at),
        f"the sidecar's first window of {cfg.shifted} traffic",
        seen=lambda: _windows_seen(sidecar, s.before),
    )
    s.say("  " + estimate_line(s.before, cfg.shifted, s.window))
    s.story.add(
        "shift",
        t,
        replayed=cfg.shifted,
        texts=len(s.shifted),
        unseen_later=len(s.unseen),
        estimated_right_after=s.window["estimate"],
    )


# ------------------------------------------------------------------------------ 5 drift
def drift(s: LoopState) -> None:
    """The sidecar flags drift and queues the most uncertain texts; the annotators label
    them."""
    cfg, t, store, before = s.cfg, time.monotonic(), s.store, s.before
    sidecar = s.wiring.sidecar.url
    s.say("[5/8] drift: waiting for the sidecar to flag it")
    s.wait(
        lambda: (_metric(sidecar, "sentiops_drift_detected", model_version=before) or 0) >= 1,
        f"drift flagged on v{before}",
        seen=lambda: _windows_seen(sidecar, before),
    )
    p_values = {
        test: _metric(sidecar, "sentiops_drift_p_value", model_version=before, test=test)
        for test in ("combined", "embedding", "label_mix", "confidence")
    }
    s.say(f"  drift flagged for v{before}: p-values {p_values}")
    queued = s.wait(
        lambda: _labelling_rows(store),
        "the labelling queue",
        seen=lambda: _windows_seen(sidecar, before),
    )
    assert s.annotators is not None
    n = s.annotators.label_queue(queued)
    where = " (tasks of Label Studio's training queue)" if s.wiring.studio else ""
    s.say(f"  labelling queue: {len(queued)} texts; annotators label {n}{where}")
    s.story.add("drift", t, model_version=before, p_values=p_values, queued=len(queued))
    s.show("accuracy", (live_accuracy_by_domain(store, s.domain), "live accuracy so far"))
    labelled = labelled_estimate(store, s.domain, before, cfg.shifted)
    s.say("  " + estimate_line(before, cfg.shifted, s.window, labelled))


# ------------------------------------------------------------------------------ 6 retrain
def retrain(s: LoopState) -> None:
    """With drift and enough new labels the sidecar starts a retraining run (the pipeline on
    the original data and the labels); its gate decides whether it becomes the candidate."""
    t, store = time.monotonic(), s.store
    s.say("[6/8] retrain: the sidecar triggers a run once enough new labels exist")
    annotators = s.annotators
    assert annotators is not None

    def new_trigger() -> list[dict[str, Any]]:
        annotators.label_queue(_labelling_rows(store))  # the queue keeps growing
        return [_read_json(u) for u in _triggers(store) if u not in s.earlier_triggers]

    trigger = s.wait(new_trigger, "a retraining trigger", seen=lambda: _labels_seen(s))[0]
    s.say(f"  triggered: {trigger.get('message')}")
    if s.stack.replay:  # make room on the CPU for the training run
        s.stack.replay.set_rate(min(s.cfg.rate, 5.0))
    old_candidate = registry.version_of(registry.CANDIDATE)
    _follow_retraining(s, trigger)
    new_candidate = registry.version_of(registry.CANDIDATE)
    retrained = registry.latest_version()  # the run's model, approved or not
    gate = registry.tags_of(retrained) if retrained else {}
    s.approved = bool(
        new_candidate
        and new_candidate != old_candidate
        and new_candidate == retrained
        and gate.get("gate.approved") == "true"
    )
    s.candidate = new_candidate if s.approved else None
    s.story.add(
        "retrain",
        t,
        trigger=trigger.get("message"),
        datasets=trigger.get("datasets"),
        labelled_rows=trigger.get("labelled_rows"),
        candidate=s.candidate,
        gate={k: v for k, v in gate.items() if k.startswith("gate.")},
    )
    s.say(
        f"  retraining run done: gate {'APPROVED' if s.approved else 'REJECTED'} "
        f"(registry v{retrained}); {gate.get('gate.reasons', '')}"
    )


def _follow_retraining(s: LoopState, trigger: dict[str, Any]) -> None:
    """Wait for the run the sidecar started, its log followed: where it is every ~10 s."""
    log = (trigger.get("run") or {}).get("log")
    state = TrainingLog(s.cfg.challenger_type)
    tail = LogTail(Path(log), state.feed) if log else None
    if tail is not None:
        s.say(f"  retraining run output: tail -f {log}")
        tail.start()
    try:
        s.wait(
            lambda: _run_finished(s.store),
            "the retraining run",
            timeout=s.cfg.timeout * 2,
            seen=state.summary if tail is not None else None,
        )
    finally:
        if tail is not None:
            tail.stop()


# ------------------------------------------------------------------------------ 7 canary 2
def canary_2(s: LoopState) -> None:
    """The retrained candidate rolled out under the new traffic, judged with live accuracy
    from the labels; then labels of the new champion's answers for the report."""
    cfg, t = s.cfg, time.monotonic()
    s.after = s.before
    if s.approved and s.candidate:
        uri = registry.tags_of(s.candidate).get(registry.STORAGE_URI_TAG)
        s.say(
            f"[7/8] canary: the retrained v{s.candidate} under {cfg.shifted} traffic, "
            "judged with live accuracy from the labels"
        )
        if s.stack.replay:  # new traffic is new text: none of it was labelled or trained on
            s.stack.replay.set_texts(s.unseen or s.shifted)
            s.stack.replay.set_rate(cfg.rate)
        _roll_out(s, "canary-2", t, str(uri), s.candidate)
        s.after = s.stack.serving.version
    else:
        s.story.add("canary-2", t, decision="skipped: no approved retrained candidate")
    if s.after != s.before:  # enough labels of the new champion's answers to compare
        after = s.after
        with contextlib.suppress(StackError):
            s.wait(
                lambda: _labels_of(s.store, s.domain, after, cfg.shifted) >= cfg.after_labels,
                f"{cfg.after_labels} labels of v{after} on {cfg.shifted}",
                timeout=cfg.timeout / 3,
                seen=lambda: (
                    f"{_labels_of(s.store, s.domain, after, cfg.shifted)} labels so far; "
                    + _labels_seen(s)
                ),
            )
    settle_s = max(6.0, 100 / cfg.rate)
    s.say(f"  the last labels flushed ({settle_s:.0f} s)")
    time.sleep(settle_s)


# ------------------------------------------------------------------------------ 8 report
def report(s: LoopState) -> None:
    """Live accuracy by model version and domain, the verdict, estimated vs realized."""
    cfg, t, store, before, after = s.cfg, time.monotonic(), s.store, s.before, s.after
    table = live_accuracy_by_domain(store, s.domain)
    title = f"live accuracy by model version and domain (v{before} before, v{after} after)"
    s.show("accuracy", (table, title))
    on_shifted = {r["model_version"]: r for r in table if r["domain"] == cfg.shifted}
    assert s.judge is not None
    s.show(
        "verdict",
        verdict(on_shifted.get(before), on_shifted.get(after), cfg.shifted, s.judge.alpha),
    )
    estimates = {v: labelled_estimate(store, s.domain, v, cfg.shifted) for v in {before, after}}
    for v, labelled in sorted(estimates.items()):
        if labelled is not None:
            s.show("verdict", estimate_line(v, cfg.shifted, None, labelled))
    compared = before in on_shifted and after in on_shifted and after != before
    assert s.annotators is not None
    s.story.add(
        "report",
        t,
        live_accuracy=table,
        shifted_before=on_shifted.get(before),
        shifted_after=on_shifted.get(after),
        improvement_p=improvement_p(on_shifted[before], on_shifted[after]) if compared else None,
        labels_sent=s.annotators.sent,
        estimated_vs_realized=estimates,
    )


# ------------------------------------------------------------------------------ what is seen
def _windows_seen(url: str, version: str) -> str:
    """What the drift sidecar has tested of `version` so far (its /status)."""
    status = _status(url)
    v = (status.get("versions") or {}).get(version) or {}
    if not v:
        return "the sidecar has tested no window of it yet"
    last = v.get("last") or {}
    p = last.get("p_value")
    text = (
        f"{v.get('windows', 0)} windows tested, "
        f"{v.get('open_window', 0)} predictions in the open one"
    )
    if p is not None:
        text += f", last p-value {p:.3g} ({'drift' if last.get('is_drift') else 'no drift'})"
    return text + f", {v.get('consecutive_drift', 0)} drifting in a row"


def _labels_seen(s: LoopState) -> str:
    """The annotators' labels so far, and what the sidecar said last about retraining."""
    a = s.annotators
    text = f"annotators sent {a.sent} labels" if a is not None else ""
    if isinstance(a, StudioAnnotators):
        text += f" through Label Studio ({a.pending} tasks waiting"
        text += f"; paused {a.paused:.0f}s for the receiver's rounds)" if a.paused else ")"
    history = _status(s.wiring.sidecar.url).get("retrain") or []
    message = str(history[-1].get("message", "")) if history else ""
    if m := re.search(r"only (\d+) labelled rows .*\(need (\d+)\)", message):
        text += f"; sidecar: {m.group(1)}/{m.group(2)} labelled rows since drift"
    elif message:
        text += f"; sidecar: {history[-1].get('outcome')}"
    return text


def _utc_now() -> Any:
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

    from sentiops.store.storage import get_file  # lazy: pulls minio

    rows: list[dict[str, Any]] = []
    for f in layout.list_files(layout.join(store, layout.LABELLING)):
        if f.uri.endswith(".parquet"):
            rows += pq.read_table(get_file(f.uri), columns=["id", "text"]).to_pylist()
    return rows


def _triggers(store: str) -> list[str]:
    return [f.uri for f in layout.list_files(layout.join(store, layout.RETRAIN, "triggers"))]


def _read_json(uri: str) -> dict[str, Any]:
    return dict(json.loads(layout.get_bytes(uri)))


def _run_finished(store: str) -> bool:
    return not Path(layout.join(store, layout.RETRAIN, "active.json")).exists()
