"""The shadow rollout end to end: two real predictors on loopback, the traffic split mirroring
a share of the predictions to the candidate (`python -m serving --shadow`), Debian's Prometheus
scraping both, clients that label the random evaluation sample of what they were answered, the
same judge as for a canary.

A silently wrong shadow (fast, error-free, as confident as stable and with the same label mix,
but wrong: trained on the labels rotated) is rejected on live accuracy — the labels the clients
gave for stable's answers reach the shadow's copies by request id — and no client ever got one
of its answers. A healthy shadow is promoted and then serves. A dead or hung shadow never slows
or fails a client's request: the copies are dropped and counted."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentiops.local.rollout import LocalStack
from sentiops.local.stack import Predictor
from sentiops.local.traffic import TrafficSplit
from sentiops.models import modeldir
from sentiops.models.tfidf import TfidfModel
from sentiops.rollout.judge import JudgeConfig
from sentiops.security.secrets import SampleKey
from tests.conftest import make_frame

pytestmark = pytest.mark.integration
TRAFFIC = make_frame(40, seed=5)
TRUTH = dict(zip(TRAFFIC.text, TRAFFIC.label, strict=True))
STEPS, STEP_SECONDS, RATE = [50, 100], 6.0, 40.0
JUDGE = JudgeConfig(min_requests=40, min_feedback=20)
SAMPLE_RATE = "0.5"  # half of the requests are in the random evaluation sample
ROTATED = {"positive": "negative", "negative": "neutral", "neutral": "positive"}


def _model(folder: Path, relabel: dict[str, str] | None = None, c: float = 4.0) -> Path:
    df = make_frame(40)
    labels = df.label.map(lambda x: (relabel or {}).get(x, x))
    model = TfidfModel.fit(df.text, labels, c=c, char_ngrams=False)
    return modeldir.write(
        folder,
        model.save,
        {"model_type": "tfidf-logreg", "labels": model.labels, "params": {"c": c}},
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shadow-models")
    return {
        "stable": _model(root / "stable"),
        "retrained": _model(root / "retrained", c=3.0),
        # every text answered fast, without errors, as confidently as stable and with the same
        # label mix on balanced traffic — and wrong: each class learnt as the next one
        "rotated": _model(root / "rotated", ROTATED),
    }


class Clients:
    """Clients of the model's URL: v1 predictions with their own request ids at `rate` a
    second; each answer is recorded (status, the `x-model-version` that answered); the random
    evaluation sample of what they were answered is labelled from the truth half a second
    later through the same URL (`:feedback`), as annotators do."""

    def __init__(self, url: str, rate: float = RATE) -> None:
        self.url, self.rate = url, rate
        self.answers: list[tuple[int, str, str]] = []  # (status, x-model-version, request id)
        self.labelled: list[str] = []
        self.refused: list[str] = []
        self.pending: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [
            threading.Thread(target=self._predict, daemon=True),
            threading.Thread(target=self._label, daemon=True),
        ]

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(30)

    def _predict(self) -> None:
        texts = list(TRUTH)
        with httpx.Client(timeout=30.0) as client:
            k, t0 = 0, time.monotonic()
            while not self.stop_event.wait(max(0.0, t0 + k / self.rate - time.monotonic())):
                text = texts[k % len(texts)]
                k += 1
                rid = uuid.uuid4().hex
                try:
                    r = client.post(
                        f"{self.url}/v1/models/sentiment:predict",
                        json={"instances": [text]},
                        headers={"x-request-id": rid},
                    )
                except httpx.HTTPError:
                    with self.lock:
                        self.answers.append((0, "", rid))
                    continue
                answered = r.headers.get("x-request-id", rid)
                with self.lock:
                    self.answers.append(
                        (r.status_code, r.headers.get("x-model-version", ""), answered)
                    )
                    if r.status_code == 200 and SampleKey.from_env().in_sample(answered):
                        self.pending.append((time.monotonic() + 0.5, answered, TRUTH[text]))

    def _label(self) -> None:
        with httpx.Client(timeout=30.0) as client:
            while not self.stop_event.wait(0.25):
                now = time.monotonic()
                with self.lock:
                    due = [p for p in self.pending if p[0] <= now]
                    self.pending = [p for p in self.pending if p[0] > now]
                if not due:
                    continue
                body = [{"id": rid, "label": label} for _, rid, label in due]
                r = client.post(f"{self.url}/v1/models/sentiment:feedback", json=body)
                with self.lock:
                    (self.labelled if r.status_code == 200 else self.refused).extend(
                        rid for _, rid, _ in due
                    )

    def versions(self) -> dict[str, int]:
        with self.lock:
            out: dict[str, int] = {}
            for status, version, _ in self.answers:
                key = version if status == 200 else f"status {status}"
                out[key] = out.get(key, 0) + 1
            return out


def _stack(tmp_path: Path, stable_dir: Path) -> LocalStack:
    store = tmp_path / "store"
    stack = LocalStack(
        tmp_path / "work", predictor_args=[f"--feedback_store={store}"], progress=lambda _: None
    )
    return stack.start(stable_dir, "1")


def _failed(record: Any) -> set[str]:
    return {c.name for step in record.steps for c in step.checks if c.result == "fail"}


def test_a_silently_wrong_shadow_is_rejected_and_no_client_saw_its_answers(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTIOPS_EVAL_SAMPLE_RATE", SAMPLE_RATE)
    stack = _stack(tmp_path, models["stable"])
    try:
        with Clients(stack.split.url) as clients:
            record = stack.rollout(
                models["rotated"],
                STEPS,
                STEP_SECONDS,
                JUDGE,
                max_holds=2,
                canary_version="2",
                mode="shadow",
            )
            time.sleep(1.0)  # answers after the rollback: stable's
        served_after = stack.serving.version if stack.serving else None
    finally:
        stack.stop()
    assert record.decision == "rolled_back", record.to_markdown()
    assert record.mode == "shadow" and all(s.mode == "shadow" for s in record.steps)
    # only the labels could tell: same speed, no errors, same confidence and label mix
    assert _failed(record) == {"live_accuracy"}, record.to_markdown()
    judged = [
        c
        for s in record.steps
        for c in s.checks
        if c.name == "live_accuracy" and c.result == "fail"
    ]
    assert judged[0].canary is not None and judged[0].canary < 0.2 < 0.9 < judged[0].stable
    assert any("live_accuracy" in r for r in record.reasons)
    # the shadow was measured on live traffic, its sampled answers labelled ...
    last = record.steps[-1]
    assert last.canary["requests"] >= JUDGE.min_requests and last.canary["feedback_total"] > 0
    # ... and every client answer came from stable, before, during and after
    assert clients.versions() == {"1": len(clients.answers)}, clients.versions()
    assert served_after == "1"
    # the labels were given for what clients got (stable's answers) and all were stored;
    # only the random evaluation sample was labelled (about half of the requests)
    assert clients.labelled and not clients.refused
    assert all(SampleKey.from_env().in_sample(rid) for rid in clients.labelled)
    assert 0.3 < len(clients.labelled) / len(clients.answers) < 0.7
    assert stack.split.mirrored["sent"] >= last.canary["requests"] * 0.9
    assert stack.split.mirrored["dropped"] == 0


def test_a_healthy_shadow_is_promoted_and_then_serves(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTIOPS_EVAL_SAMPLE_RATE", SAMPLE_RATE)
    stack = _stack(tmp_path, models["stable"])
    try:
        with Clients(stack.split.url) as clients:
            record = stack.rollout(
                models["retrained"], STEPS, STEP_SECONDS, JUDGE, canary_version="2", mode="shadow"
            )
            time.sleep(2.0)
        assert stack.serving is not None and stack.serving.version == "2"
        with httpx.Client() as client:
            r = client.post(
                f"{stack.split.url}/v1/models/sentiment:predict",
                json={"instances": ["the food was great"]},
            )
    finally:
        stack.stop()
    assert record.decision == "promoted", record.to_markdown()
    assert not _failed(record)
    assert [s.traffic for s in record.steps if s.verdict != "hold"] == STEPS
    # live accuracy of the shadow was judged on its labels, and every step compared it with
    # stable's live traffic (a shadow never takes traffic from stable)
    checks = {c.name: c for c in record.steps[-1].checks}
    assert checks["live_accuracy"].result == "pass", record.to_markdown()
    assert all(s.baseline == "live" for s in record.steps)
    # clients (one after the other) got stable's answers while the shadow was judged, the
    # candidate's once it was promoted: never one of the shadow's in between
    versions = [v for _, v, _ in clients.answers]
    assert all(status == 200 for status, _, _ in clients.answers)
    switch = versions.index("2")
    assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}
    assert switch >= 0.7 * RATE * STEP_SECONDS * len(STEPS), switch
    assert r.status_code == 200 and r.headers["x-model-version"] == "2"
    assert "Shadow rollout: PROMOTED" in record.to_markdown()


def test_a_dead_or_hung_shadow_never_slows_or_breaks_the_clients(
    models: dict[str, Path], tmp_path: Path
) -> None:
    from prometheus_client import REGISTRY

    def dropped() -> float:
        value = REGISTRY.get_sample_value("sentiops_mirror_requests_total", {"outcome": "dropped"})
        return value or 0.0

    stable = Predictor(models["stable"], "1", tmp_path / "stable").start()
    shadow = Predictor(
        models["rotated"],
        "2",
        tmp_path / "shadow",
        extra_args=["--shadow=true", f"--feedback_store={tmp_path / 'store'}"],
    ).start()
    split = TrafficSplit(stable.url, mirror_queue=16, mirror_senders=2, mirror_timeout=5.0)
    split.start()
    split.mirror(shadow.url, 100)
    texts = list(TRUTH)

    def burst(n: int) -> list[tuple[int, str, float]]:
        out = []
        with httpx.Client(timeout=30.0) as client:
            for i in range(n):
                t = time.perf_counter()
                r = client.post(
                    f"{split.url}/v1/models/sentiment:predict",
                    json={"instances": [texts[i % len(texts)]]},
                )
                out.append(
                    (r.status_code, r.headers.get("x-model-version", ""), time.perf_counter() - t)
                )
        return out

    def p95(answers: list[tuple[int, str, float]]) -> float:
        return sorted(a[2] for a in answers)[int(0.95 * len(answers)) - 1]

    try:
        healthy = burst(60)
        time.sleep(0.5)
        assert split.mirrored["sent"] >= 55 and split.mirrored["failed"] == 0
        # labels go to the serving predictor: the split never copies them, a shadow refuses them
        r = httpx.post(
            f"{shadow.url}/v1/models/sentiment:feedback", json={"id": "x", "label": "positive"}
        )
        assert r.status_code == 404 and "is a shadow" in r.json()["error"]
        before = dropped()
        # hung: the shadow accepts connections and never answers (each copy waits 5 s)
        assert shadow.process is not None
        os.kill(shadow.process.proc.pid, signal.SIGSTOP)
        hung = burst(120)
        assert split.mirrored["dropped"] > 0 and dropped() - before == split.mirrored["dropped"]
        # dead: every copy fails at once
        os.kill(shadow.process.proc.pid, signal.SIGKILL)
        shadow.process.proc.wait(10)
        time.sleep(5.5)  # the copies stuck on the hung shadow time out
        failed = split.mirrored["failed"]
        dead = burst(60)
        time.sleep(0.5)
        assert split.mirrored["failed"] >= failed + 55
    finally:
        split.stop()
        shadow.stop()
        stable.stop()
    for answers in (healthy, hung, dead):
        assert {(status, version) for status, version, _ in answers} == {(200, "1")}
    # a client never waited for a copy (one wait would be the 5 s timeout)
    assert max(a[2] for a in hung + dead) < 2.0
    assert p95(hung) < max(0.25, 3 * p95(healthy)) and p95(dead) < max(0.25, 3 * p95(healthy))


def test_the_cli_runs_a_shadow_rollout(models: dict[str, Path], tmp_path: Path) -> None:
    """`sentiops rollout --local --mode shadow ...` as the docs show it (docs/pipeline.md)."""
    import json
    import subprocess
    import sys

    (tmp_path / "traffic.csv").write_text("text\n" + "\n".join(json.dumps(t) for t in TRUTH))
    exe = Path(sys.executable).with_name("sentiops")
    base = [
        str(exe),
        "rollout",
        "--local",
        "--stable",
        str(models["stable"]),
        "--canary",
        str(models["retrained"]),
        "--traffic",
        "traffic.csv",
    ]
    bad = subprocess.run(
        [*base, "--mode", "blue-green"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode != 0 and "use one of canary, shadow" in bad.stdout + bad.stderr
    proc = subprocess.run(
        [
            *base,
            "--mode",
            "shadow",
            "--steps",
            "100",
            "--step-seconds",
            "4",
            "--rate",
            "40",
            "--min-requests",
            "40",
            "--output-json",
            "decision.json",
            "--workdir",
            "work",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "decision.json").read_text())
    assert record["decision"] == "promoted" and record["mode"] == "shadow"
    assert "Shadow rollout: PROMOTED" in proc.stdout
    assert "copies to the shadow" in proc.stdout
