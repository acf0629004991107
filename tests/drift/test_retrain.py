"""Persistent drift -> labelling queue -> a retraining run once labels exist, once under the
cooldown, never while a run is active (the local command adapter, for real)."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from drift.retrain import CommandTrigger, Retrainer, uncertainty_order
from sentiops.security.secrets import SampleKey
from sentiops.store import layout as traffic_store
from tests.drift.conftest import shifted_texts
from tests.helpers import wait_until

RECORDER = """
import json, pathlib, sys, time
pathlib.Path(sys.argv[1]).open("a").write(json.dumps(sys.argv[2:]) + "\\n")
time.sleep(float(sys.argv[2]) if sys.argv[2:3] and sys.argv[2][0].isdigit() else 0)
"""


def recorder(tmp_path: Path, sleep: float = 0.0) -> tuple[str, Path]:
    script, runs = tmp_path / "record.py", tmp_path / "runs.jsonl"
    script.write_text(RECORDER)
    return f"{sys.executable} {script} {runs} {sleep} {{data_args}}", runs


@pytest.mark.integration
def test_drift_queues_texts_then_triggers_once_under_cooldown(
    sidecar_factory, detector_model: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    command, runs = recorder(tmp_path)
    s = sidecar_factory(
        detector_model,
        "--window-size",
        "40",
        "--min-window",
        "20",
        "--consecutive",
        "2",
        "--retrain-enabled",
        "true",
        "--retrain-mode",
        "command",
        "--retrain-command",
        command,
        "--retrain-cooldown",
        "3600",
        "--retrain-min-labels",
        "10",
        "--retrain-datasets",
        "vader-tweets",
        store=store,
        env={"SENTIOPS_EVAL_SAMPLE_RATE": "0.25"},
    )
    texts = shifted_texts(160, seed=3)
    s.post_texts(detector_model, texts[:80], per_request=4)
    s.wait_for(lambda: s.windows("7", "drift") >= 2, what="2 drifting windows")
    s.wait_for(
        lambda: s.sample("sentiops_retrain_triggers_total", outcome="no_labels") >= 1,
        30,
        "no-labels decision",
    )
    queued = sorted(store.glob("labelling/date=*/model_version=7/window-*.parquet"))
    assert len(queued) == 2  # each drifting window once
    q = pd.read_parquet(queued[0])
    # the random evaluation sample (a quarter of the ids) is never queued for its uncertainty
    assert 20 <= len(q) < 40 and list(q["rank"]) == list(range(len(q)))
    key = SampleKey.from_env(rate=0.25)  # the sidecar's key (the session's secret file)
    assert not any(key.in_sample(i) for i in q.id)
    assert q["margin"].is_monotonic_increasing  # most uncertain first
    assert set(q.text) <= set(texts[:80])
    both = sum(len(pd.read_parquet(f)) for f in queued)
    assert s.sample("sentiops_labelling_queued_total", model_version="7") == both
    assert s.sample("sentiops_retrain_triggers_total", outcome="triggered") == 0

    # annotators label the queued texts
    labels = store / "labels" / "batch-1.csv"
    labels.parent.mkdir(parents=True)
    pd.DataFrame({"text": q.text[:20], "label": ["neutral"] * 20}).to_csv(labels, index=False)
    s.post_texts(detector_model, texts[80:120], per_request=4)
    s.wait_for(lambda: runs.exists(), 60, "the retraining command ran")
    s.wait_for(
        lambda: s.sample("sentiops_retrain_triggers_total", outcome="triggered") == 1,
        30,
        "trigger metric",
    )
    records = list(store.glob("retrain/triggers/*.json"))
    assert len(records) == 1
    run = runs.read_text().splitlines()
    assert len(run) == 1
    assert json.loads(run[0])[1:] == ["--data", "vader-tweets", "--data", str(labels)]

    # drift goes on: the cooldown holds, no second run
    s.post_texts(detector_model, texts[120:160], per_request=4)
    s.wait_for(
        lambda: s.sample("sentiops_retrain_triggers_total", outcome="cooldown") >= 1,
        60,
        "cooldown decision",
    )
    assert s.sample("sentiops_retrain_triggers_total", outcome="triggered") == 1
    assert len(list(store.glob("retrain/triggers/*.json"))) == 1
    assert len(runs.read_text().splitlines()) == 1
    assert "retraining triggered" in s.process.tail(20000)


def test_no_second_run_while_one_is_active(tmp_path: Path) -> None:
    store = tmp_path / "store"
    labels = store / "labels" / "l.csv"
    labels.parent.mkdir(parents=True)
    pd.DataFrame({"text": [f"t{i}" for i in range(12)], "label": ["positive"] * 12}).to_csv(
        labels, index=False
    )
    command, runs = recorder(tmp_path, sleep=30)
    trigger = CommandTrigger(command, str(store), tmp_path / "work")
    retrainer = Retrainer(str(store), "sentiment", trigger, ["vader-tweets"], 0, 10)
    since = datetime.now(UTC) - timedelta(hours=1)
    first = retrainer.consider("7", since, 3)
    assert first["outcome"] == "triggered", first
    assert trigger.active() and (store / "retrain" / "active.json").exists()
    time.sleep(1.1)  # past the zero cooldown
    second = retrainer.consider("7", since, 4)
    assert second["outcome"] == "active_run", second
    assert len(list(store.glob("retrain/triggers/*.json"))) == 1
    trigger.process.stop()
    wait_until(  # the marker goes with the process
        lambda: trigger.active() is None, timeout=10, interval=0.1, what="the marker gone"
    )
    assert retrainer.consider("7", since, 5)["outcome"] == "triggered"
    trigger.process.stop()


def test_labels_before_the_drift_do_not_count(tmp_path: Path) -> None:
    store = tmp_path / "store"
    old = store / "labels" / "old.csv"
    old.parent.mkdir(parents=True)
    pd.DataFrame({"text": ["a"] * 20, "label": ["positive"] * 20}).to_csv(old, index=False)
    command, runs = recorder(tmp_path)
    retrainer = Retrainer(
        str(store), "sentiment", CommandTrigger(command, str(store), tmp_path), ["x"], 0, 10
    )
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert retrainer.consider("7", later, 3)["outcome"] == "no_labels"
    assert not runs.exists()
    assert traffic_store.label_files(str(store)) and not traffic_store.label_files(
        str(store), since=later
    )


def test_uncertainty_order_is_by_margin() -> None:
    rows = [
        {"id": "a", "probabilities": [0.9, 0.05, 0.05]},
        {"id": "b", "probabilities": [0.4, 0.35, 0.25]},
        {"id": "c", "probabilities": [0.6, 0.3, 0.1]},
    ]
    assert [r["id"] for r in uncertainty_order(rows)] == ["b", "c", "a"]


def test_kfp_trigger_submits_the_compiled_pipeline_and_sees_active_runs(tmp_path: Path) -> None:
    """The cluster adapter against a stand-in for kfp.Client (the real API needs a KFP
    backend): submit = the shipped compiled pipeline with the datasets; active = a run of the
    experiment that has not finished."""
    from types import SimpleNamespace as NS

    from drift.retrain import KfpTrigger
    from sentiops.pipeline.kubeflow import COMPILED

    class Client:
        def __init__(self) -> None:
            self.runs: list = []
            self.submitted: list = []

        def get_experiment(self, experiment_name: str):
            return NS(experiment_id=f"exp-{experiment_name}")

        def list_runs(self, experiment_id: str, page_size: int, sort_by: str):
            assert experiment_id == "exp-sentiops"
            return NS(runs=self.runs)

        def create_run_from_pipeline_package(
            self, path, arguments, run_name, experiment_name, namespace
        ):
            self.submitted.append((path, arguments, experiment_name))
            return NS(run_id="r1")

    client = Client()
    trigger = KfpTrigger("http://kfp", "sentiops", client=client)
    assert trigger.active() is None
    client.runs = [NS(run_id="old", state="SUCCEEDED"), NS(run_id="r0", state="RUNNING")]
    assert "r0" in (trigger.active() or "")
    out = trigger.submit(["vader-tweets", "s3://b/labels/x.parquet"], "drift_with_labels")
    assert out["run_id"] == "r1"
    path, args, exp = client.submitted[0]
    assert Path(path) == COMPILED and exp == "sentiops"
    assert args == {"datasets": ["vader-tweets", "s3://b/labels/x.parquet"]}


def _feedback_part(store: Path, name: str, token: str, n: int, wrong: int) -> None:
    """A feedback part as the predictor writes it: `wrong` of `n` labels disagree."""
    part = store / "labels" / "feedback" / "date=2026-12-02" / f"part-{name}.parquet"
    part.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "id": [f"{name}{i}" for i in range(n)],
            "text": [f"{name} text {i}" for i in range(n)],
            "label": ["negative" if i < wrong else "positive" for i in range(n)],
            "predicted_label": ["positive"] * n,
            "labelled_by": [token] * n,
            "sample": "random",
        }
    ).to_parquet(part)


def test_a_burst_that_disagrees_far_more_or_comes_from_one_token_is_held(tmp_path: Path) -> None:
    """The poisoning guard: labels of one token that disagree with the model far more than
    the other tokens' on the same traffic (or, with a share limit, nearly all labels from one
    token) are held for review: no run, a record naming why; a run records which tokens'
    labels it used."""
    store = tmp_path / "store"
    command, runs = recorder(tmp_path)
    since = datetime.now(UTC) - timedelta(hours=1)
    _feedback_part(store, "a", "team-a", 60, 12)  # 20 % disagree
    _feedback_part(store, "b", "team-b", 60, 54)  # 90 % disagree: poisoned
    guard = Retrainer(
        str(store),
        "sentiment",
        CommandTrigger(command, str(store), tmp_path),
        ["vader-tweets"],
        0,
        10,
    )
    held = guard.consider("7", since, 3)
    assert held["outcome"] == "held_for_review", held
    assert "team-b" in held["message"] and not runs.exists()
    record = json.loads(next(store.glob("retrain/held/*.json")).read_text())
    assert record["tokens"]["team-b"] == {"labels": 60, "disagreement": 0.9}

    clean = tmp_path / "clean"
    _feedback_part(clean, "a", "team-a", 60, 12)
    _feedback_part(clean, "b", "team-b", 60, 15)
    ok = Retrainer(
        str(clean),
        "sentiment",
        CommandTrigger(command, str(clean), tmp_path / "w"),
        ["vader-tweets"],
        0,
        10,
    )
    result = ok.consider("7", since, 3)
    assert result["outcome"] == "triggered", result
    assert set(result["record"]["labels_by_token"]) == {"team-a", "team-b"}
    ok.trigger.process.stop()  # type: ignore[union-attr]

    one = tmp_path / "one"
    _feedback_part(one, "a", "team-a", 95, 20)
    _feedback_part(one, "b", "team-b", 5, 1)
    share = Retrainer(
        str(one),
        "sentiment",
        CommandTrigger(command, str(one), tmp_path / "x"),
        ["vader-tweets"],
        0,
        10,
        max_token_share=0.9,
    )
    outcome = share.consider("7", since, 3)
    assert outcome["outcome"] == "held_for_review" and "one token" in outcome["message"]
