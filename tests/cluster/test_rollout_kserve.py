"""The KServe rollout executor against a real kube-apiserver with the real KServe CRD, running
as the pipeline's ServiceAccount with only the chart's RBAC. No KServe controller runs here, so
a thread plays it: it writes `status` (Ready, observed generation, Knative revisions) for every
new generation and records the predictor spec it saw, i.e. the patch sequence. The approval
step waits on the InferenceService's annotation: a person approves or rejects with `sentiops
rollout approve|reject --namespace`, or nobody answers and the timeout policy decides."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator

import pytest

from sentiops.errors import ConfigError, RolloutError
from sentiops.rollout.approval import Approval
from sentiops.rollout.kserve import (
    APPROVAL_ANNOTATION,
    GROUP,
    PLURAL,
    PREVIOUS_ANNOTATION,
    REQUEST_ANNOTATION,
    AnnotationGate,
    KServeExecutor,
    api_client,
    load_settings,
)
from sentiops.rollout.record import PROMOTED, ROLLED_BACK
from sentiops.rollout.steps import RolloutPlan, run
from tests.helpers import wait_until
from tests.traffic import Simulated

from .harness import ROLLOUT_NAMESPACE, ApiServer, PlaysController

pytestmark = pytest.mark.integration
NS, NAME = ROLLOUT_NAMESPACE, "sentiment"


class Controller(PlaysController):
    """Plays KServe: every new generation gets a ready status; each spec seen is recorded."""

    def __init__(self, kube: ApiServer) -> None:
        super().__init__(kube)
        self.seen: list[dict] = []

    def step(self) -> None:
        isvc = self.api.get_namespaced_custom_object(GROUP, "v1beta1", NS, PLURAL, NAME)
        gen = isvc["metadata"]["generation"]
        if (isvc.get("status") or {}).get("observedGeneration") != gen:
            self.seen.append(copy.deepcopy(isvc["spec"]["predictor"]))
            revision = f"{NAME}-predictor-{gen:05d}"
            self.api.patch_namespaced_custom_object_status(
                GROUP,
                "v1beta1",
                NS,
                PLURAL,
                NAME,
                {
                    "status": {
                        "observedGeneration": gen,
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "components": {
                            "predictor": {
                                "latestCreatedRevision": revision,
                                "latestReadyRevision": revision,
                            }
                        },
                    }
                },
            )


@pytest.fixture
def controller(release: ApiServer) -> Iterator[Controller]:
    with Controller(release).running() as c:
        yield c


def _env(predictor: dict) -> dict[str, str]:
    (container,) = [c for c in predictor["containers"] if c["name"] == "kserve-container"]
    return {e["name"]: e.get("value") for e in container["env"]}


def _executor(kube: ApiServer, version: str) -> KServeExecutor:
    """The executor as the pipeline's ServiceAccount would run it (its token, its RBAC)."""
    sa = api_client(str(kube.kubeconfig_for("pipeline")))
    settings = load_settings(sa, NS)
    return KServeExecutor(
        sa,
        NS,
        settings.inference_service,
        settings.model_uri(version),
        version,
        ready_timeout=30,
        poll_seconds=0.1,
    )


def _plan(version: str, stable: str) -> RolloutPlan:
    return RolloutPlan(version, stable, steps=[10, 50, 100], step_seconds=1)


def test_promotion_patch_sequence_as_the_pipeline_service_account(
    release: ApiServer, controller: Controller
) -> None:
    ex = _executor(release, "2")
    before = ex.get()
    assert before is not None and before["spec"]["predictor"]["labels"] == {
        "sentiops.io/model-version": "1"
    }
    record = run(_plan("2", "1"), ex, Simulated({}), sleep=lambda s: None, progress=lambda m: None)
    assert record.decision == PROMOTED
    time.sleep(0.3)
    seen = controller.seen[-4:]
    assert [p.get("canaryTrafficPercent") for p in seen] == [10, 50, 100, None]
    for p in seen:
        assert p["labels"]["sentiops.io/model-version"] == "2"
        assert _env(p)["STORAGE_URI"] == "s3://sentiops/models/sentiment/2/"
        assert _env(p)["SENTIOPS_MODEL_VERSION"] == "2"
    after = ex.get()
    assert after is not None and PREVIOUS_ANNOTATION not in (
        after["metadata"].get("annotations") or {}
    )
    # everything but the model and the traffic stays as the chart rendered it
    for key in ("logger", "serviceAccountName", "securityContext", "minReplicas"):
        assert after["spec"]["predictor"][key] == before["spec"]["predictor"][key]


def test_rollback_restores_the_previous_spec(release: ApiServer, controller: Controller) -> None:
    ex = _executor(release, "3")
    before = ex.get()
    assert before is not None
    stable = before["spec"]["predictor"]["labels"]["sentiops.io/model-version"]
    skewed = Simulated({"mix": (0.05, 0.05, 0.9)}, canary_version="3")
    record = run(_plan("3", stable), ex, skewed, sleep=lambda s: None, progress=lambda m: None)
    assert record.decision == ROLLED_BACK and record.reasons[0].startswith("label_mix")
    time.sleep(0.3)
    start, zero, restored = controller.seen[-3:]
    assert start["canaryTrafficPercent"] == 10 and _env(start)["SENTIOPS_MODEL_VERSION"] == "3"
    assert zero["canaryTrafficPercent"] == 0  # traffic back first ...
    assert restored == before["spec"]["predictor"]  # ... then the previous spec, exactly
    after = ex.get()
    assert after is not None and after["spec"]["predictor"] == before["spec"]["predictor"]
    assert PREVIOUS_ANNOTATION not in (after["metadata"].get("annotations") or {})


def test_pipeline_service_account_has_nothing_more(release: ApiServer) -> None:
    sa = "system:serviceaccount:sentiops-rollout:sentiops-pipeline"
    assert release.can_i(sa, "patch", "inferenceservices.serving.kserve.io", NS)
    assert not release.can_i(sa, "delete", "inferenceservices.serving.kserve.io", NS)
    status = release.kubectl(
        "auth",
        "can-i",
        "patch",
        "inferenceservices.serving.kserve.io",
        "--subresource=status",
        f"--as={sa}",
        f"--namespace={NS}",
        check=False,
    )
    assert status.stdout.strip() == "no"  # only the controller writes status
    assert not release.can_i(sa, "patch", "inferenceservices.serving.kserve.io", "default")
    assert not release.can_i(sa, "list", "secrets", NS)


def test_not_ready_revision_times_out_with_the_reason(release: ApiServer) -> None:
    """No controller: the new generation is never observed, so the rollout stops and says why."""
    ex = _executor(release, "4")
    ex.ready_timeout = 1.0
    with pytest.raises(RolloutError, match="not ready after 1s: status not yet observed"):
        ex.set_traffic(10)


# ------------------------------------------- the pipeline's rollout step, end to end
EXPORTER = """
import sys, time
import numpy as np
from prometheus_client import start_http_server
from sentiops import metrics as m

version, skew = sys.argv[2], sys.argv[3] == "skewed"
rng = np.random.default_rng(int(version))
mix = [0.05, 0.05, 0.9] if skew else [0.3, 0.2, 0.5]
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
while True:  # 100 requests a second, like a predictor under replayed traffic
    for _ in range(10):
        label = ["negative", "neutral", "positive"][rng.choice(3, p=mix)]
        m.REQUEST_LATENCY.labels("sentiment", version).observe(rng.lognormal(-4.0, 0.3))
        m.PREDICTIONS.labels("sentiment", version, label).inc()
        m.PREDICTION_CONFIDENCE.labels("sentiment", version).observe(min(1, rng.normal(0.8, 0.1)))
    time.sleep(0.1)
"""


@pytest.fixture
def prometheus(tmp_path) -> Iterator[tuple[str, list]]:
    """A real Prometheus scraping two metric exporters: stable v1 and a skewed canary v2."""
    import sys

    import yaml

    from .harness import free_port, port_open, start, tool, wait_for_server

    (tmp_path / "exporter.py").write_text(EXPORTER)
    ports = {"1": free_port(), "2": free_port()}
    exporters = [
        start(
            f"exporter-{v}",
            [
                sys.executable,
                str(tmp_path / "exporter.py"),
                str(p),
                v,
                "skewed" if v == "2" else "healthy",
            ],
            tmp_path,
        )
        for v, p in ports.items()
    ]
    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "predictors",
                        "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports.values()]}],
                    }
                ],
            }
        )
    )
    servers = list(exporters)
    try:
        for e, p in zip(exporters, ports.values(), strict=True):
            wait_for_server(lambda p=p: port_open(p), e, 30, "exporter listening")
        prom = start(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            tmp_path,
        )
        servers.append(prom)
        wait_for_server(lambda: port_open(prom_port), prom, 30, "prometheus listening")
        yield f"http://127.0.0.1:{prom_port}", servers
    finally:
        for s in servers:
            s.stop()


def test_rollout_step_reads_the_configmap_judges_from_prometheus_and_settles_the_registry(
    release: ApiServer, controller: Controller, prometheus: tuple[str, list], tmp_path
) -> None:
    """`stages.rollout` as the KFP component calls it: settings from the chart's ConfigMap,
    metrics from a real Prometheus, the executor as the pipeline's ServiceAccount, and the
    registry told the outcome (the skewed canary is rejected, the champion stays)."""
    from sentiops.models import modeldir
    from sentiops.models.tfidf import TfidfModel
    from sentiops.pipeline import stages
    from sentiops.registry import lifecycle as registry
    from sentiops.registry import tracking
    from tests.conftest import make_frame

    url, _ = prometheus
    # a short, fast plan: one 4 s step at 10 %
    release.kubectl(
        "-n",
        NS,
        "patch",
        "configmap",
        "sentiops-rollout",
        "--type=merge",
        "-p",
        '{"data": {"canarySteps": "10", "stepIntervalSeconds": "4", "min_requests": "100"}}',
    )
    # the registry: v1 champion, v2 the gate-approved candidate (a real sqlite MLflow)
    tracking.configure()
    df = make_frame(20)
    model = TfidfModel.fit(df.text, df.label, char_ngrams=False)
    out = modeldir.write(
        tmp_path / "m", model.save, {"model_type": "tfidf-logreg", "labels": model.labels}
    )
    for _ in range(2):
        registry.log_training(out, "t", {}, {}, {})
    registry.mark_candidate("1", "s3://sentiops/models/sentiment/1/", {"approved": True})
    registry.promote("1", "first")
    registry.mark_candidate("2", "s3://sentiops/models/sentiment/2/", {"approved": True})
    # the InferenceService serves v1 (as the first rollout left it)
    ex = _executor(release, "1")
    ex.start(100)
    ex.promote()
    before = ex.get()
    assert before is not None
    release.kubectl(
        "-n",
        NS,
        "patch",
        "configmap",
        "sentiops-rollout",
        "--type=merge",
        "-p",
        '{"data": {"prometheusUrl": ""}}',
    )
    with pytest.raises(ConfigError, match="no Prometheus URL"):
        stages.rollout("s3://x/2/", "2", NS, "", kubeconfig=str(release.kubeconfig_for("pipeline")))
    release.kubectl(
        "-n",
        NS,
        "patch",
        "configmap",
        "sentiops-rollout",
        "--type=merge",
        "-p",
        f'{{"data": {{"prometheusUrl": "{url}"}}}}',
    )
    record = stages.rollout(
        "s3://sentiops/models/sentiment/2/",
        "2",
        NS,
        kubeconfig=str(release.kubeconfig_for("pipeline")),
    )
    assert record.decision == "rolled_back", record.to_markdown()
    (step,) = record.steps
    assert step.traffic == 10 and step.canary["requests"] >= 100
    assert [c.name for c in step.checks if c.result == "fail"] == ["label_mix"]
    after = ex.get()
    assert after is not None and after["spec"]["predictor"] == before["spec"]["predictor"]
    assert registry.version_of(registry.CHAMPION) == "1"
    assert registry.version_of(registry.CANDIDATE) is None
    assert registry.tags_of("2")["lifecycle.stage"] == "rejected"


def test_people_see_and_stop_a_canary(release: ApiServer, controller: Controller, tmp_path) -> None:
    """`sentiops rollout status` shows a canary in progress; `rollback` stops it (traffic back,
    previous spec, candidate rejected); `rollback --to-previous` reverts a promotion."""
    from typer.testing import CliRunner

    from sentiops.cli.main import app
    from sentiops.models import modeldir
    from sentiops.models.tfidf import TfidfModel
    from sentiops.registry import lifecycle as registry
    from sentiops.registry import tracking
    from tests.conftest import make_frame

    tracking.configure()
    df = make_frame(20)
    model = TfidfModel.fit(df.text, df.label, char_ngrams=False)
    out = modeldir.write(
        tmp_path / "m", model.save, {"model_type": "tfidf-logreg", "labels": model.labels}
    )
    for v in ("1", "2", "3"):
        registry.log_training(out, "t", {}, {}, {})
        registry.mark_candidate(v, f"s3://sentiops/models/sentiment/{v}/", {"approved": True})
        if v != "3":
            registry.promote(v, "canary healthy")
    kubeconfig = str(release.kubeconfig_for("pipeline"))
    ex = _executor(release, "2")
    ex.start(100)
    ex.promote()
    serving = ex.get()
    canary = _executor(release, "3")
    canary.start(10)
    runner = CliRunner()
    res = runner.invoke(app, ["rollout", "status", "--namespace", NS, "--kubeconfig", kubeconfig])
    assert res.exit_code == 0, res.output
    assert "model version 3, canary in progress at 10%" in res.output
    assert "candidate" in res.output and "champion" in res.output
    res = runner.invoke(
        app,
        [
            "rollout",
            "rollback",
            "--namespace",
            NS,
            "--kubeconfig",
            kubeconfig,
            "--reason",
            "customers complain",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "canary v3 rolled back; serving v2" in res.output
    after = ex.get()
    assert serving is not None and after is not None
    assert after["spec"]["predictor"] == serving["spec"]["predictor"]
    assert "customers complain" in registry.tags_of("3")["lifecycle.rejected_reason"]
    res = runner.invoke(app, ["rollout", "rollback", "--namespace", NS, "--kubeconfig", kubeconfig])
    assert res.exit_code == 10 and "--to-previous" in res.output
    res = runner.invoke(
        app,
        [
            "rollout",
            "rollback",
            "--namespace",
            NS,
            "--kubeconfig",
            kubeconfig,
            "--to-previous",
            "--reason",
            "v2 drops neutral",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "v2 reverted; serving v1" in res.output
    assert registry.version_of(registry.CHAMPION) == "1"
    assert registry.version_of(registry.PREVIOUS) == "2"
    reverted = ex.get()
    assert (
        reverted is not None
        and _env(reverted["spec"]["predictor"])["SENTIOPS_MODEL_VERSION"] == "1"
    )


# ------------------------------------------- a person in the loop: the annotation gate
def _annotations(kube: ApiServer) -> dict[str, str]:
    import json

    out = kube.kubectl("-n", NS, "get", "isvc", NAME, "-o", "json").stdout
    return json.loads(out)["metadata"].get("annotations") or {}


def _approval_rollout(
    kube: ApiServer, version: str, **approval: object
) -> tuple[threading.Thread, dict]:
    """Run a rollout that waits before 100 % (steps of 0.3 s) in a thread, as the pipeline's
    ServiceAccount; the result lands in the dict it returns."""
    ex = _executor(kube, version)
    before = ex.get()
    assert before is not None
    stable = before["spec"]["predictor"]["labels"]["sentiops.io/model-version"]
    plan = RolloutPlan(
        version,
        stable,
        steps=[10, 50, 100],
        step_seconds=0.3,
        approval=Approval(
            **{
                "before": "100",
                "timeout_seconds": 60,  # type: ignore[arg-type]
                "poll_seconds": 0.05,
                **approval,
            }
        ),
    )
    out: dict = {"before": before}

    def go() -> None:
        out["record"] = run(
            plan,
            ex,
            Simulated({}, canary_version=version),
            time.sleep,
            progress=lambda m: None,
            gate=AnnotationGate(ex),
        )

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, out


def _wait_pending(kube: ApiServer, thread: threading.Thread) -> dict[str, str]:
    def pending() -> dict[str, str] | None:
        notes = _annotations(kube)
        if notes.get(APPROVAL_ANNOTATION) == "pending":
            return notes
        assert thread.is_alive(), "the rollout ended without asking for approval"
        return None

    return wait_until(pending, timeout=30, interval=0.1, what="the rollout asking for approval")


@pytest.mark.parametrize("answer", ["approve", "reject"])
def test_the_approval_step_waits_for_a_person_on_the_inferenceservice(
    release: ApiServer, controller: Controller, answer: str
) -> None:
    """The rollout asks on the InferenceService (annotation pending + the request), `sentiops
    rollout status` shows it, `sentiops rollout approve|reject --namespace` answers it (as a
    person with their own kubeconfig), and the rollout goes on to 100 % or rolls back."""
    import json

    from typer.testing import CliRunner

    from sentiops.cli.main import app

    version = "5" if answer == "approve" else "6"
    thread, out = _approval_rollout(release, version)
    notes = _wait_pending(release, thread)
    request = json.loads(notes[REQUEST_ANNOTATION])
    assert request["waiting"] == "before 100%" and request["canary_version"] == version
    assert "sentiops rollout approve|reject --namespace sentiops-rollout" in request["how"]
    seen = [p.get("canaryTrafficPercent") for p in controller.seen]
    assert seen[-2:] == [10, 50]  # waiting at 50 %, not yet at 100 %
    runner, kubeconfig = CliRunner(), str(release.kubeconfig)
    res = runner.invoke(app, ["rollout", "status", "--namespace", NS, "--kubeconfig", kubeconfig])
    assert "waiting for approval before 100%" in res.output, res.output
    res = runner.invoke(app, ["rollout", answer, "--namespace", NS, "--kubeconfig", kubeconfig])
    assert res.exit_code == 0, res.output
    assert f"{answer}: v{version} before 100%" in res.output
    thread.join(60)
    record = out["record"]
    assert record.approvals[0]["answer"] == answer and record.approvals[0]["by"] == "a person"
    after = _annotations(release)
    assert APPROVAL_ANNOTATION not in after and REQUEST_ANNOTATION not in after
    time.sleep(0.3)
    if answer == "approve":
        assert record.decision == PROMOTED
        assert [p.get("canaryTrafficPercent") for p in controller.seen[-2:]] == [100, None]
    else:
        assert record.decision == ROLLED_BACK
        assert record.reasons == ["not approved before 100%: reject by a person"]
        assert controller.seen[-1] == out["before"]["spec"]["predictor"]  # the previous spec
    res = runner.invoke(app, ["rollout", "approve", "--namespace", NS, "--kubeconfig", kubeconfig])
    assert res.exit_code == 10 and "no rollout waits for approval" in res.output


def test_nobody_approves_and_the_timeout_policy_rolls_back(
    release: ApiServer, controller: Controller
) -> None:
    thread, out = _approval_rollout(release, "7", timeout_seconds=1.0)
    _wait_pending(release, thread)
    release.kubectl(
        "-n", NS, "annotate", "isvc", NAME, f"{APPROVAL_ANNOTATION}=maybe", "--overwrite"
    )  # not an answer: ignored
    thread.join(60)
    record = out["record"]
    assert record.decision == ROLLED_BACK and record.approvals[0]["by"] == "timeout"
    assert record.reasons == ["not approved before 100%: reject by timeout"]
    assert APPROVAL_ANNOTATION not in _annotations(release)


def test_an_answer_left_from_an_earlier_rollout_is_not_taken(
    release: ApiServer, controller: Controller
) -> None:
    """`approve` set before the rollout asks is reset to pending: only an answer given to this
    request counts (here nobody gives one, and the policy 'approve' goes on)."""
    release.kubectl(
        "-n", NS, "annotate", "isvc", NAME, f"{APPROVAL_ANNOTATION}=reject", "--overwrite"
    )
    thread, out = _approval_rollout(release, "8", timeout_seconds=1.0, on_timeout="approve")
    _wait_pending(release, thread)
    thread.join(60)
    record = out["record"]
    assert record.decision == PROMOTED and record.approvals[0]["by"] == "timeout"
