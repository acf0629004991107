"""The shadow rollout's parts without servers: the one step loop in shadow mode, the labels a
shadow joins with its own answers (by request id and text), the objects the KServe shadow
executor writes, and which requests the local split copies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from sentiops.errors import FeedbackError
from sentiops.feedback.intake import Feedback
from sentiops.feedback.labels import Item
from sentiops.feedback.predictions import PredictionIndex
from sentiops.feedback.shadow import ShadowLabels
from sentiops.local.traffic import TrafficSplit
from sentiops.rollout import steps
from sentiops.rollout.kserve import RolloutSettings
from sentiops.rollout.record import PROMOTED, ROLLED_BACK
from sentiops.rollout.shadow import route_ready, shadow_isvc
from sentiops.security.secrets import SampleKey
from tests.traffic import Simulated

from .test_rollout_judge import FakeExecutor


# ------------------------------------------------------------------ the step loop
@pytest.mark.parametrize("canary", [{}, {"mix": (0.05, 0.05, 0.9)}, {"latency_ms": 60.0}])
def test_a_shadow_walks_the_same_loop_and_gets_the_same_decisions_as_a_canary(canary) -> None:  # noqa: ANN001
    records = {}
    for mode in ("canary", "shadow"):
        ex, said = FakeExecutor(), []
        plan = steps.RolloutPlan("2", "1", steps=[10, 50, 100], step_seconds=1, mode=mode)
        source = Simulated(canary)
        records[mode] = (
            steps.run(plan, ex, source, sleep=lambda s: None, progress=said.append),
            ex.calls,
            said,
        )
    (canary_record, canary_calls, _), (shadow_record, shadow_calls, said) = records.values()
    assert shadow_record.decision == canary_record.decision
    assert shadow_calls == canary_calls
    assert [s.verdict for s in shadow_record.steps] == [s.verdict for s in canary_record.steps]
    assert shadow_record.mode == "shadow" and {s.mode for s in shadow_record.steps} == {"shadow"}
    assert canary_record.mode == "canary"
    assert "10% copied to v2" in said[0]
    headline = "PROMOTED" if shadow_record.decision == PROMOTED else "ROLLED BACK"
    markdown = shadow_record.to_markdown()
    assert f"# Shadow rollout: {headline}" in markdown and "copied to the shadow" in markdown
    assert shadow_record.to_dict()["mode"] == "shadow"
    assert shadow_record.decision == (ROLLED_BACK if canary else PROMOTED)


def test_a_plan_refuses_an_unknown_mode_and_the_configmap_may_choose_shadow() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        steps.RolloutPlan("2", "1", mode="blue-green")
    assert RolloutSettings.from_configmap({}).mode == "canary"
    assert RolloutSettings.from_configmap({"rolloutMode": "shadow"}).mode == "shadow"


# ------------------------------------------------------------------ the shadow's labels
def _prediction(rid: str, text: str, label: str, version: str) -> dict[str, Any]:
    return {
        "id": rid,
        "text": text,
        "label": label,
        "confidence": 0.9,
        "model_name": "sentiment",
        "model_version": version,
        "time": "2026-12-03T00:00:00+00:00",
    }


def _feedback(version: str, outcome: str, sample: str) -> float:
    value = REGISTRY.get_sample_value(
        "sentiops_feedback_total",
        {"model_name": "sentiment", "model_version": version, "correct": outcome, "sample": sample},
    )
    return value or 0.0


def test_a_shadow_counts_the_labels_of_its_own_answers_by_request_id_and_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTIOPS_EVAL_SAMPLE_RATE", "0.5")
    store = str(tmp_path / "store")
    texts = {f"r{i}": f"text number {i}" for i in range(40)}
    truth = {rid: ("positive" if i % 2 else "negative") for i, rid in enumerate(texts)}
    # stable (v1) answered every request right; the labels are for its answers
    index = PredictionIndex(store)
    index.remember(_prediction(rid, t, truth[rid], "1") for rid, t in texts.items())
    stable = Feedback(store, index=index)
    shadow = ShadowLabels(store)
    stable.record([Item("r0", truth["r0"])])  # a label from before the shadow started
    assert shadow.refresh() == 0  # the first read only notes the parts already there
    # the shadow (v7) got copies of r0-r29 and answers "positive" to all; r29's copy carried
    # another text (a client reusing an id): that one is not the labelled prediction
    shadow.remember(
        _prediction(rid, texts[rid] if rid != "r29" else "another text", "positive", "7")
        for rid in list(texts)[:30]
    )
    before = {
        (o, s): _feedback("7", o, s) for o in ("true", "false") for s in ("random", "targeted")
    }
    stable.record([Item(rid, truth[rid]) for rid in texts if rid != "r0"])
    counted = shadow.refresh()
    assert counted == 28  # r1-r28: r0 was labelled before, r29 is another text, r30+ not copied
    assert shadow.refresh() == 0  # each part is read once, each label counted once
    mine = [f"r{i}" for i in range(1, 29)]
    expected = {
        ("true", "random"): 0,
        ("false", "random"): 0,
        ("true", "targeted"): 0,
        ("false", "targeted"): 0,
    }
    key = SampleKey.from_env()
    for rid in mine:  # the sample is the stable answer's (stored with its label)
        expected[
            (str(truth[rid] == "positive").lower(), "random" if key.in_sample(rid) else "targeted")
        ] += 1
    assert {k: _feedback("7", *k) - v for k, v in before.items()} == expected
    live = shadow.export_live_metrics()
    sampled = [rid for rid in mine if key.in_sample(rid)]
    assert live["7"]["labels"] == len(sampled)
    assert live["7"]["accuracy"] == pytest.approx(
        sum(truth[r] == "positive" for r in sampled) / len(sampled)
    )
    # the stored labels are stable's: one per id, joined with stable's answer
    assert stable.live_metrics()["1"]["accuracy"] == 1.0
    with pytest.raises(FeedbackError, match="is a shadow") as info:
        shadow.record([Item("r1", "positive")])
    assert info.value.status == 404
    # on a cluster the mirror copies the gateway's x-request-id, which stable kept as its
    # prediction's client id and the label carries: the shadow (its own prediction id issued,
    # the copy's id kept as client id) counts the label by it, and never another text's
    shadow.remember([{**_prediction("s-1", "gateway text", "positive", "7"), "client_id": "gw-9"}])
    n = shadow.count(
        [
            {
                "id": "p-1",
                "client_id": "gw-9",
                "text": "gateway text",
                "label": "positive",
                "sample": "random",
            },
            {
                "id": "p-2",
                "client_id": "gw-9",
                "text": "other",
                "label": "negative",
                "sample": "random",
            },
        ]
    )
    assert n == 1


# ------------------------------------------------------------------ the KServe objects
def _chart_isvc() -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "sentiment",
            "namespace": "ml",
            "labels": {
                "helm.sh/chart": "sentiops-0.1.0",
                "app.kubernetes.io/name": "x",
                "app.kubernetes.io/managed-by": "Helm",
            },
            "annotations": {
                "serving.kserve.io/deploymentMode": "Standard",
                "meta.helm.sh/release-name": "sentiops",
            },
        },
        "spec": {
            "predictor": {
                "canaryTrafficPercent": 10,
                "logger": {"mode": "all", "url": "http://localhost:9081/"},
                "labels": {"sentiops.io/model-version": "1"},
                "serviceAccountName": "sentiops-predictor",
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": "serving:1",
                        "env": [
                            {"name": "STORAGE_URI", "value": "s3://b/models/sentiment/1/"},
                            {"name": "SENTIOPS_MODEL_VERSION", "value": "1"},
                            {"name": "HOME", "value": "/tmp"},
                        ],
                    },
                    {"name": "drift", "image": "drift:1"},
                ],
            }
        },
    }


def test_the_shadow_inference_service_is_the_serving_one_with_the_candidate_as_a_shadow() -> None:
    main = _chart_isvc()
    body = shadow_isvc(main, "s3://b/models/sentiment/2/", "2")
    assert body["metadata"]["name"] == "sentiment-shadow"
    assert body["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Standard"}
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/name": "x",
        "sentiops.io/rollout": "shadow",
        "app.kubernetes.io/component": "shadow",
    }
    predictor = body["spec"]["predictor"]
    assert set(predictor) == {"labels", "serviceAccountName", "containers"}
    (container,) = predictor["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "STORAGE_URI": "s3://b/models/sentiment/2/",
        "SENTIOPS_MODEL_VERSION": "2",
        "HOME": "/tmp",
        "SENTIOPS_SHADOW": "true",
    }
    assert predictor["labels"] == {"sentiops.io/model-version": "2"}
    assert main == _chart_isvc()  # the serving spec is not changed


def test_a_mirror_route_is_ready_when_its_gateway_accepted_this_generation() -> None:
    def route(generation: int, *conditions: tuple[str, str, int]) -> dict[str, Any]:
        found = [
            {"type": t, "status": s, "observedGeneration": g, "reason": t} for t, s, g in conditions
        ]
        parents = [{"conditions": found}] if conditions else []
        return {"metadata": {"generation": generation}, "status": {"parents": parents}}

    assert route_ready(route(2)) == (False, "no gateway has reported on it yet")
    assert not route_ready(route(2, ("Accepted", "True", 1)))[0]  # an older generation's
    ok, why = route_ready(route(2, ("Accepted", "True", 2), ("ResolvedRefs", "False", 2)))
    assert not ok and why.startswith("ResolvedRefs=False")
    assert route_ready(route(2, ("Accepted", "True", 2), ("ResolvedRefs", "True", 2)))[0]


def test_the_local_split_copies_predictions_only() -> None:
    split = TrafficSplit("http://127.0.0.1:1", port=1)
    split.mirror("http://127.0.0.1:2", 100)
    for path in ("/v1/models/sentiment:predict", "/v2/models/sentiment/infer"):
        assert split._mirror_to(path) == "http://127.0.0.1:2"
    for path in (
        "/v1/models/sentiment:feedback",
        "/v1/models/sentiment:explain",
        "/metrics",
        "/v2/models/sentiment",
        "/v2/health/ready",
    ):
        assert split._mirror_to(path) == ""
    split.mirror("http://127.0.0.1:2", 0)
    assert split._mirror_to("/v1/models/sentiment:predict") == ""
    split.mirror("http://127.0.0.1:2", 30)
    share = sum(bool(split._mirror_to("/v2/models/sentiment/infer")) for _ in range(4000)) / 4000
    assert 0.27 < share < 0.33
