"""`sentiops status`: the same sources as the console, as tables or JSON, each failing soft."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sentiops.console import charts, prometheus, status
from sentiops.local.processes import free_port
from tests.conftest import run_cli
from tests.console.conftest import Stack

COLUMNS = {"COLUMNS": "200"}


@pytest.mark.integration
def test_status_json_against_the_stack(stack: Stack) -> None:
    r = run_cli(
        "status", "--prometheus-url", stack.prometheus.url, "--json", "--strict", env=stack.env
    )
    assert r.returncode == 0, r.stderr + r.stdout
    s = json.loads(r.stdout)
    aliases = {a["alias"]: a["version"] for a in s["registry"]["data"]["aliases"]}
    assert aliases == {
        "champion": stack.champion,
        "previous": stack.previous,
        "challenger": stack.champion,
    }  # the last trained, now promoted
    last = s["rollout"]["data"]["last"]
    assert last["decision"] == "promoted" and [s["traffic"] for s in last["steps"]] == [10, 50, 100]
    assert last["canary_version"] == stack.champion and last["steps"][2]["failed"] == []
    drift = {r["model_version"]: r for r in s["drift"]["data"]}
    assert set(drift) == {stack.champion, stack.previous}
    row = drift[stack.champion]
    assert 0 < row["combined"] <= 1 and isinstance(row["drift"], bool)
    assert all(row[t] is not None for t in status.DRIFT_TESTS)
    est = {r["model_version"]: r for r in s["estimate"]["data"]}
    assert set(est) == {stack.champion, stack.previous}
    row = est[stack.previous]  # the exporter's estimate beside its live accuracy
    low, high = row["estimated_accuracy_low"], row["estimated_accuracy_high"]
    assert low < row["estimated_accuracy"] < high
    assert row["live_accuracy"] is not None and row["validation_accuracy"] is not None
    assert abs(row["drop"] - (row["validation_accuracy"] - row["estimated_accuracy"])) < 1e-9
    assert set(row["recall"]) == {"negative", "neutral", "positive"}
    acc = {r["model_version"]: r for r in s["live_accuracy"]["data"]}
    assert set(acc) == {stack.champion, stack.previous}
    served = acc[stack.champion]  # from the predictor's feedback API (the replay's labels)
    assert 0 < served["accuracy"] <= 1 and 0 < served["macro_f1"] <= 1 and served["labels"] >= 1
    traffic = s["traffic"]["data"]
    assert all(t["up"] for t in traffic["targets"]) and len(traffic["targets"]) == 2


@pytest.mark.integration
def test_status_tables_against_the_stack(stack: Stack) -> None:
    r = run_cli("status", "--prometheus-url", stack.prometheus.url, env=stack.env | COLUMNS)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for text in (
        "serving: registry sentiops-sentiment",
        "champion",
        "previous",
        "approved",
        "PROMOTED",
        "last rollout's steps",
        "drift, last tested window",
        "live accuracy (labelled feedback)",
        f"v{stack.champion}",
        "estimated accuracy, last tested window",
        "scrape targets up 2/2",
    ):
        assert text in out, (text, out)


def test_every_source_fails_soft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No registry, a corrupt rollout record, an unreachable Prometheus: each is named, the
    command still prints and exits 0 (--strict: 1); nothing is created."""
    home = tmp_path / "empty-home"
    (home / "rollout").mkdir(parents=True)
    (home / "rollout" / "decision.json").write_text("{truncated")
    dead = f"http://127.0.0.1:{free_port()}"
    r = run_cli("status", "--prometheus-url", dead, env={"SENTIOPS_HOME": str(home)} | COLUMNS)
    assert r.returncode == 0, r.stderr
    assert "registry: unavailable: no registry yet" in r.stdout
    assert "rollout: unavailable: cannot read" in r.stdout
    assert f"drift: unavailable: Prometheus at {dead} is unreachable" in r.stdout
    assert not (home / "mlflow.db").exists()
    r = run_cli("status", "--json", "--strict", env={"SENTIOPS_HOME": str(home)})
    assert r.returncode == 1
    s = json.loads(r.stdout)
    assert s["traffic"]["error"].startswith("unavailable: no Prometheus URL")


def test_rollout_in_progress_and_last(tmp_path: Path) -> None:
    folder = tmp_path / "rollout"
    folder.mkdir()
    step = {
        "traffic": 10,
        "verdict": "hold",
        "score": 50.0,
        "checks": [
            {
                "name": "error_rate",
                "result": "fail",
                "value": 0.1,
                "threshold": 0.01,
                "p_value": 0.001,
                "canary": 0.1,
                "stable": 0.0,
                "message": "10% vs 0%",
            },
            {
                "name": "latency_p95",
                "result": "pass",
                "value": 0.0,
                "threshold": 0.05,
                "p_value": 0.5,
                "canary": 0.01,
                "stable": 0.01,
                "message": "ok",
            },
        ],
        "canary": {},
        "stable": {},
        "started_at": "a",
        "ended_at": "b",
    }
    (folder / "progress.json").write_text(
        json.dumps(
            {"canary_version": "4", "stable_version": "3", "plan": [10, 50, 100], "steps": [step]}
        )
    )
    section = status.rollout_section(folder, now=time.time() + 5)
    assert section.ok and section.data["last"] is None
    p = section.data["in_progress"]
    assert p["canary_version"] == "4" and p["steps"][0]["failed"] == ["error_rate"]
    assert p["updated_seconds_ago"] >= 5
    (folder / "progress.json").unlink()
    assert status.rollout_section(folder).notes == [f"no local rollout recorded in {folder}"]


def test_prometheus_errors_are_unavailable() -> None:
    prom = prometheus.PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=1)
    for fn in (
        status.drift_section,
        status.accuracy_section,
        status.traffic_section,
        status.estimate_section,
    ):
        section = fn(prom)
        assert not section.ok and "unreachable" in (section.error or "")
    with pytest.raises(prometheus.Unavailable, match="unreachable"):
        charts.series(prom, "drift", 5)


def test_the_newest_rollout_records_are_read(tmp_path: Path) -> None:
    """`sentiops rollout --local` writes under $SENTIOPS_HOME/rollout, the loop of make run /
    make up under $SENTIOPS_HOME/loop/rollout: without --rollout-dir the newer one is shown."""
    import os

    assert status.find_rollout_dir(tmp_path) == tmp_path / "rollout"  # neither: the default
    for i, sub in enumerate(("rollout", "loop/rollout")):
        folder = tmp_path / sub
        folder.mkdir(parents=True)
        (folder / "decision.json").write_text(
            json.dumps({"decision": "promoted", "steps": [], "canary_version": str(i)})
        )
        os.utime(folder / "decision.json", (1000 + i, 1000 + i))
    assert status.find_rollout_dir(tmp_path) == tmp_path / "loop" / "rollout"
    os.utime(tmp_path / "rollout" / "decision.json", (5000, 5000))
    assert status.find_rollout_dir(tmp_path) == tmp_path / "rollout"
