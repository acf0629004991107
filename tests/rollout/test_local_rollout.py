"""The local rollout end to end: two real predictors on loopback behind the traffic split,
Debian's Prometheus scraping both, replayed traffic, the same judge as on a cluster.

A healthy canary is promoted; a canary that returns errors, one that is slow, and one that
answers fast and without errors but with a skewed label mix are each rolled back, with the
metric that failed named in the reasons. A rollout that waits for a person before 100 % goes
on when `sentiops rollout approve --workdir` answers, rolls back on `reject` or when nobody
answers in time, and notifies a real webhook receiver of each request and outcome."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sentiops.local.rollout import LocalStack, local_rollout
from sentiops.models import modeldir
from sentiops.models.tfidf import TfidfModel
from sentiops.rollout.approval import APPROVAL_FILE, Approval
from sentiops.rollout.judge import JudgeConfig
from tests.conftest import make_frame
from tests.helpers import wait_until

from .webhooks import Receiver

pytestmark = pytest.mark.integration
TRAFFIC = make_frame(40, seed=5).text.tolist()
STEPS, STEP_SECONDS, RATE = [50, 100], 4.0, 40.0
JUDGE = JudgeConfig(min_requests=40)


def _model(folder: Path, relabel: dict[str, str] | None = None, c: float = 4.0) -> Path:
    df = make_frame(40)
    labels = df.label.replace(relabel or {})
    model = TfidfModel.fit(df.text, labels, c=c, char_ngrams=False)
    return modeldir.write(
        folder,
        model.save,
        {"model_type": "tfidf-logreg", "labels": model.labels, "params": {"c": c}},
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rollout-models")
    return {
        "stable": _model(root / "stable"),
        "retrained": _model(root / "retrained", c=3.0),
        # answers every text, fast, without errors, but never "neutral": 2/3 "positive"
        "skewed": _model(root / "skewed", {"neutral": "positive"}),
    }


def _rollout(stable: Path, canary: Path, work: Path, **kw):  # noqa: ANN003, ANN202
    record = local_rollout(
        stable,
        canary,
        TRAFFIC,
        work,
        STEPS,
        STEP_SECONDS,
        RATE,
        JUDGE,
        progress=lambda _: None,
        **kw,
    )
    failed = {c.name for step in record.steps for c in step.checks if c.result == "fail"}
    return record, failed


def test_a_healthy_canary_is_promoted(models: dict[str, Path], tmp_path: Path) -> None:
    record, failed = _rollout(models["stable"], models["retrained"], tmp_path)
    assert record.decision == "promoted", record.to_markdown()
    assert not failed
    assert [s.traffic for s in record.steps if s.verdict != "hold"] == STEPS
    first = next(s for s in record.steps if s.verdict != "hold")
    assert first.canary["requests"] > 0 and first.stable["requests"] > 0, record.to_markdown()
    assert record.steps[-1].baseline.startswith("all of stable's traffic of the 50% step")
    # the record people and the console read: the last decision, no rollout in progress
    assert json.loads((tmp_path / "decision.json").read_text())["decision"] == "promoted"
    assert not (tmp_path / "progress.json").exists()


def test_a_canary_that_returns_errors_is_rolled_back(models, tmp_path) -> None:  # noqa: ANN001
    # the new predictor configuration rejects texts over 30 characters: most of the traffic
    record, failed = _rollout(
        models["stable"],
        models["stable"],
        tmp_path,
        canary_version="strict",
        canary_args=["--max_chars=30"],
    )
    assert record.decision == "rolled_back", record.to_markdown()
    assert "error_rate" in failed and any("error_rate" in r for r in record.reasons)


def test_a_slow_canary_is_rolled_back(models, tmp_path) -> None:  # noqa: ANN001
    # the same model, but a batching window of 80 ms: every sparse request waits for company
    record, failed = _rollout(
        models["stable"],
        models["stable"],
        tmp_path,
        canary_version="slow",
        canary_args=["--batch_window_ms=80"],
    )
    assert record.decision == "rolled_back", record.to_markdown()
    assert "latency" in failed and not failed & {"error_rate", "label_mix"}, record.to_markdown()


def test_a_fast_error_free_canary_with_a_skewed_label_mix_is_rolled_back(models, tmp_path):  # noqa: ANN001, ANN201
    record, failed = _rollout(models["stable"], models["skewed"], tmp_path)
    assert record.decision == "rolled_back", record.to_markdown()
    assert "label_mix" in failed and "error_rate" not in failed
    assert any("label_mix" in r for r in record.reasons)


def test_the_readme_command_with_a_relative_home_in_a_fresh_directory(
    models: dict[str, Path], tmp_path: Path
) -> None:
    """`sentiops rollout --local ...` typed as docs/reference.md (CLI) shows it, in a fresh
    directory with the default relative SENTIOPS_HOME (./.sentiops) and relative paths: every
    server starts in its own folder, so paths must be resolved at the edge (Prometheus once
    failed with "open .sentiops/rollout/prometheus/prometheus.yml: no such file")."""
    import os
    import shutil
    import subprocess
    import sys

    user = tmp_path / "checkout"
    user.mkdir()
    shutil.copytree(models["stable"], user / "stable")
    shutil.copytree(models["retrained"], user / "canary")
    (user / "traffic.csv").write_text("text\n" + "\n".join(json.dumps(t) for t in TRAFFIC))
    env = {k: v for k, v in os.environ.items() if k != "SENTIOPS_HOME"}
    exe = Path(sys.executable).with_name("sentiops")
    proc = subprocess.run(
        [
            str(exe),
            "rollout",
            "--local",
            "--stable",
            "stable",
            "--canary",
            "canary",
            "--traffic",
            "traffic.csv",
            "--steps",
            "50",
            "--step-seconds",
            "4",
            "--rate",
            "40",
            "--min-requests",
            "40",
            "--output-json",
            "decision.json",
        ],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((user / "decision.json").read_text())["decision"] == "promoted"
    assert (user / ".sentiops" / "rollout" / "prometheus" / "prometheus.yml").exists()


def _answer_when_asked(workdir: Path, answer: str, seen: list) -> threading.Thread:
    """A person: waits until the rollout asks (approval.json pending, progress.json says so),
    then answers with the real command."""

    def person() -> None:
        path = workdir / APPROVAL_FILE
        wait_until(
            lambda: path.exists() and json.loads(path.read_text()).get("state") == "pending",
            timeout=120,
            interval=0.1,
            what="the rollout asking for approval",
        )
        seen.append(json.loads((workdir / "progress.json").read_text())["waiting"])
        exe = Path(sys.executable).with_name("sentiops")
        done = subprocess.run(
            [str(exe), "rollout", answer, "--workdir", str(workdir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        seen.append(done.stdout + done.stderr)

    thread = threading.Thread(target=person, daemon=True)
    thread.start()
    return thread


def test_the_approval_step_on_the_local_stack(models: dict[str, Path], tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "stack", progress=lambda _: None)
    wait = {"before": "100", "timeout_seconds": 120, "poll_seconds": 0.2}
    with Receiver() as hook:
        try:
            stack.start(models["stable"])
            stack.replay_texts(TRAFFIC, RATE)

            def rollout(canary: Path, version: str | None, **approval: object):  # noqa: ANN202
                return stack.rollout(
                    canary,
                    STEPS,
                    STEP_SECONDS,
                    JUDGE,
                    canary_version=version,
                    approval=Approval(**{**wait, **approval}),  # type: ignore[arg-type]
                    notify=[f"generic={hook.url}/hook"],
                )

            seen: list = []
            person = _answer_when_asked(stack.workdir, "approve", seen)
            approved = rollout(models["retrained"], None)
            person.join(10)
            assert approved.decision == "promoted", approved.to_markdown()
            assert approved.approvals[0]["by"] == "a person"
            assert seen[0]["waiting"] == "before 100%" and "--workdir" in seen[0]["how"]
            assert "approve: v" in seen[1] and "before 100%" in seen[1]
            assert [s.traffic for s in approved.steps if s.verdict != "hold"][-1] == 100

            person = _answer_when_asked(stack.workdir, "reject", seen)
            rejected = rollout(models["stable"], "rejected")
            person.join(10)
            assert rejected.decision == "rolled_back", rejected.to_markdown()
            assert rejected.reasons == ["not approved before 100%: reject by a person"]

            timed_out = rollout(models["stable"], "unanswered", timeout_seconds=2.0)
            assert timed_out.decision == "rolled_back"
            assert timed_out.approvals[0]["by"] == "timeout"
            assert not (stack.workdir / APPROVAL_FILE).exists()
        finally:
            stack.stop()
        events = [(b["event"], b["canary_version"]) for _, b in hook.wait_for(6)]
    v = approved.canary_version
    assert [e for e in events if e[0] != "hold"] == [
        ("approval", v),
        ("promote", v),
        ("approval", "rejected"),
        ("rollback", "rejected"),
        ("approval", "unanswered"),
        ("rollback", "unanswered"),
    ]
    assert all(b["record_url"].endswith("/decision.json") for _, b in hook.received)
