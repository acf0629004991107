"""The KServe shadow executor against a real kube-apiserver with the real KServe and Gateway
API (HTTPRoute v1.5.1, what KServe 0.20 builds on) CRDs, running as the pipeline's
ServiceAccount with exactly the chart's RBAC for a shadow rollout: for this module the
release's Role `sentiops-pipeline` gets the rules of the chart's own Role rendered with
`inferenceService.canary.mode=shadow` (no extra Role). No KServe and no gateway run here, so a
thread plays both: it writes a ready status for every new generation of the two
InferenceServices and of the mirror route, and records every spec it saw and every deletion —
the sequence of what the rollout did.

The serving InferenceService `reviews` (the chart's, in Standard mode, with the HTTPRoute
KServe's Gateway API ingress makes for it) is the canary tests' `sentiment` renamed, so the
two modules never touch each other's objects."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentiops.errors import RolloutError
from sentiops.rollout.kserve import API_VERSION, GROUP, PLURAL, PREVIOUS_ANNOTATION, api_client
from sentiops.rollout.record import PROMOTED, ROLLED_BACK
from sentiops.rollout.shadow import (
    GATEWAY_GROUP,
    GATEWAY_VERSION,
    ROUTES,
    ShadowExecutor,
    mirror_route,
)
from sentiops.rollout.steps import RolloutPlan, run
from tests.helpers import wait_until
from tests.traffic import Simulated

from .conftest import helm_template
from .harness import (
    ROLLOUT_NAMESPACE,
    ApiServer,
    PlaysController,
    httproute_crd_for_apiserver_1_20,
)

pytestmark = pytest.mark.integration
NS, NAME, SHADOW = ROLLOUT_NAMESPACE, "reviews", "reviews-shadow"
PATHS = ["/v1/models/reviews:predict", "/v2/models/reviews/infer"]


def shadow_rules(name: str) -> list[dict[str, Any]]:
    """What the chart's Role `sentiops-pipeline` adds for a shadow rollout of InferenceService
    `name` (docs/pipeline.md): the mirror route (get KServe's, create/patch ours), and delete
    on the two objects the rollout creates, by name only."""
    return [
        {"apiGroups": [GATEWAY_GROUP], "resources": [ROUTES], "verbs": ["get", "create", "patch"]},
        {
            "apiGroups": [GATEWAY_GROUP],
            "resources": [ROUTES],
            "resourceNames": [f"{name}-shadow"],
            "verbs": ["delete"],
        },
        {
            "apiGroups": [GROUP],
            "resources": [PLURAL],
            "resourceNames": [f"{name}-shadow"],
            "verbs": ["delete"],
        },
    ]


def kserve_route() -> dict[str, Any]:
    """The top-level HTTPRoute KServe 0.20's Gateway API ingress makes for a Standard-mode
    InferenceService without transformer (`createRawTopLevelHTTPRoute`): every path to the
    predictor Service, the InferenceService's name and namespace as headers."""
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "hostnames": [f"{NAME}-{NS}.example.com"],
            "parentRefs": [
                {
                    "group": GATEWAY_GROUP,
                    "kind": "Gateway",
                    "namespace": "kserve",
                    "name": "kserve-ingress-gateway",
                }
            ],
            "rules": [
                {
                    "matches": [{"path": {"type": "RegularExpression", "value": "^/.*$"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {
                                "set": [
                                    {"name": "KServe-Isvc-Name", "value": NAME},
                                    {"name": "KServe-Isvc-Namespace", "value": NS},
                                ]
                            },
                        }
                    ],
                    "backendRefs": [
                        {
                            "kind": "Service",
                            "name": f"{NAME}-predictor",
                            "namespace": NS,
                            "port": 80,
                        }
                    ],
                    "timeouts": {"request": "60s"},
                }
            ],
        },
    }


def cel_rules(route: dict[str, Any]) -> list[str]:
    """The HTTPRoute CRD's CEL rules that bear on a mirror route (a 1.20 server cannot run
    them): percent or fraction, not both; a Service backend has a port; at most one filter of
    each type but RequestMirror; hostnames and matches within their limits."""
    problems = []
    for rule in route["spec"]["rules"]:
        kinds = [f["type"] for f in rule.get("filters", [])]
        problems += [
            f"two {k} filters" for k in set(kinds) if k != "RequestMirror" and kinds.count(k) > 1
        ]
        for f in rule.get("filters", []):
            if f["type"] == "RequestMirror":
                m = f["requestMirror"]
                if "percent" in m and "fraction" in m:
                    problems.append("percent and fraction")
                ref = m["backendRef"]
                if ref.get("kind", "Service") == "Service" and "port" not in ref:
                    problems.append("mirror backend without port")
        for ref in rule.get("backendRefs", []):
            if ref.get("kind", "Service") == "Service" and "port" not in ref:
                problems.append("backend without port")
        for match in rule.get("matches", []):
            path = match.get("path", {})
            if path.get("type") == "Exact" and not path.get("value", "").startswith("/"):
                problems.append(f"path {path} not absolute")
    return problems


def chart(*values: str) -> list[dict[str, Any]]:
    """The chart rendered into this module's namespace for the InferenceService `reviews`."""
    return helm_template(f"inferenceService.name={NAME}", *values, release="sentiops", namespace=NS)


SHADOW_VALUES = ("inferenceService.deploymentMode=Standard", "inferenceService.canary.mode=shadow")


def test_the_charts_role_adds_exactly_the_shadow_rules() -> None:
    """Shadow mode adds `shadow_rules` (docs/pipeline.md) to the canary's Role, no more."""
    (canary,) = [
        d for d in chart("inferenceService.deploymentMode=Standard") if d["kind"] == "Role"
    ]
    (shadow,) = [d for d in chart(*SHADOW_VALUES) if d["kind"] == "Role"]
    assert shadow["metadata"]["name"] == canary["metadata"]["name"] == "sentiops-pipeline"
    assert shadow["rules"] == canary["rules"] + shadow_rules(NAME)


@pytest.fixture(scope="module")
def cluster(release: ApiServer) -> Iterator[ApiServer]:
    kube = release
    kube.kubectl("apply", "--server-side", "-f", "-", input=httproute_crd_for_apiserver_1_20())
    kube.wait_established(f"crd/{ROUTES}.{GATEWAY_GROUP}")
    # the chart in shadow mode for the InferenceService `reviews`, in Standard (RawDeployment)
    # mode: its InferenceService, and its Role in place of the release's (canary-mode) Role
    # for this module, so the pipeline's ServiceAccount has exactly the chart's shadow RBAC
    docs = chart(*SHADOW_VALUES)
    (isvc,) = [d for d in docs if d["kind"] == "InferenceService"]
    (role,) = [d for d in docs if d["kind"] == "Role"]
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    released = json.loads(
        kube.kubectl("-n", NS, "get", "role", "sentiops-pipeline", "-o", "json").stdout
    )
    stored = json.loads(
        kube.kubectl("-n", NS, "get", "rolebinding", "sentiops-pipeline", "-o", "json").stdout
    )
    assert stored["subjects"] == binding["subjects"] and stored["roleRef"] == binding["roleRef"]
    set_rules = ["-n", NS, "patch", "role", "sentiops-pipeline", "--type=merge", "-p"]
    kube.kubectl(*set_rules, json.dumps({"rules": role["rules"]}))
    try:
        sa = f"system:serviceaccount:{NS}:sentiops-pipeline"
        wait_until(  # the RBAC authorizer's cache catches up
            lambda: kube.can_i(sa, "create", f"{ROUTES}.{GATEWAY_GROUP}", NS),
            timeout=20,
            what="the chart's shadow Role in effect",
        )
        kube.kubectl("create", "-f", "-", input=json.dumps(isvc))
        kube.kubectl("create", "-f", "-", input=json.dumps(kserve_route()))
        yield kube
    finally:  # the release's own Role again (the canary tests share the release)
        kube.kubectl(*set_rules, json.dumps({"rules": released["rules"]}))


class Controller(PlaysController):
    """Plays KServe for the two InferenceServices and the gateway for the mirror route: each
    new generation gets a ready status; what it saw is recorded in order, deletions too."""

    WATCHED = (
        ("isvc", GROUP, API_VERSION, PLURAL, NAME),
        ("isvc", GROUP, API_VERSION, PLURAL, SHADOW),
        ("route", GATEWAY_GROUP, GATEWAY_VERSION, ROUTES, SHADOW),
    )

    def __init__(self, kube: ApiServer) -> None:
        super().__init__(kube)
        self.seen: list[tuple[str, str, Any]] = []  # (kind, name, spec or "deleted")
        self.present: dict[str, bool] = {}
        self.mirror_at: dict[int, bool] = {}

    def _exists(self, route: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.get_namespaced_custom_object(GATEWAY_GROUP, GATEWAY_VERSION, NS, ROUTES, route)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def step(self) -> None:
        from kubernetes.client.exceptions import ApiException

        for kind, group, version, plural, name in self.WATCHED:
            try:
                obj = self.api.get_namespaced_custom_object(group, version, NS, plural, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                if self.present.get(f"{kind}/{name}"):
                    self.seen.append((kind, name, "deleted"))
                self.present[f"{kind}/{name}"] = False
                continue
            self.present[f"{kind}/{name}"] = True
            gen = obj["metadata"]["generation"]
            if kind == "isvc":
                if (obj.get("status") or {}).get("observedGeneration") != gen:
                    self.seen.append((kind, name, copy.deepcopy(obj)))
                    if name == NAME:  # was the mirror still there when serving changed?
                        self.mirror_at[gen] = self._exists(SHADOW)
                    self.api.patch_namespaced_custom_object_status(
                        group,
                        version,
                        NS,
                        plural,
                        name,
                        {
                            "status": {
                                "observedGeneration": gen,
                                "conditions": [{"type": "Ready", "status": "True"}],
                            }
                        },
                    )
                continue
            parents = (obj.get("status") or {}).get("parents") or [{}]
            observed = [c.get("observedGeneration") for c in parents[0].get("conditions", [])]
            if observed != [gen, gen]:
                self.seen.append((kind, name, copy.deepcopy(obj)))
                conditions = [
                    {
                        "type": t,
                        "status": "True",
                        "reason": t,
                        "message": t,
                        "observedGeneration": gen,
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                    for t in ("Accepted", "ResolvedRefs")
                ]
                self.api.patch_namespaced_custom_object_status(
                    group,
                    version,
                    NS,
                    plural,
                    name,
                    {
                        "status": {
                            "parents": [
                                {
                                    "parentRef": obj["spec"]["parentRefs"][0],
                                    "controllerName": "example.net/gateway-controller",
                                    "conditions": conditions,
                                }
                            ]
                        }
                    },
                )

    def of(self, kind: str, name: str) -> list[Any]:
        return [spec for k, n, spec in self.seen if (k, n) == (kind, name)]


@pytest.fixture
def controller(cluster: ApiServer) -> Iterator[Controller]:
    # the serving InferenceService observed before the rollout
    with Controller(cluster).running(settle=0.3) as c:
        yield c


def _executor(kube: ApiServer, version: str, name: str = NAME) -> ShadowExecutor:
    """The executor as the pipeline's ServiceAccount runs it (its token, its RBAC)."""
    sa = api_client(str(kube.kubeconfig_for("pipeline")))
    return ShadowExecutor(
        sa,
        NS,
        name,
        f"s3://sentiops/models/{name}/{version}/",
        version,
        ready_timeout=30,
        poll_seconds=0.1,
    )


def _env(predictor: dict) -> dict[str, str]:
    (container,) = [c for c in predictor["containers"] if c["name"] == "kserve-container"]
    return {e["name"]: e.get("value") for e in container["env"]}


def _plan(version: str, stable: str) -> RolloutPlan:
    return RolloutPlan(version, stable, steps=[10, 50, 100], step_seconds=1, mode="shadow")


def test_a_shadow_is_mirrored_step_by_step_then_promoted_as_the_pipeline_service_account(
    cluster: ApiServer, controller: Controller
) -> None:
    ex = _executor(cluster, "2")
    before = ex.main.get()
    assert before is not None and before["spec"]["predictor"]["labels"] == {
        "sentiops.io/model-version": "1"
    }
    record = run(_plan("2", "1"), ex, Simulated({}), sleep=lambda s: None, progress=lambda m: None)
    assert record.decision == PROMOTED and record.mode == "shadow", record.to_markdown()
    time.sleep(0.3)
    # the shadow InferenceService: the serving predictor with the candidate's model, as a
    # shadow (no inference log, no drift sidecar, no canary share), in Standard mode
    (created, deleted) = controller.of("isvc", SHADOW)
    assert deleted == "deleted"
    shadow = created["spec"]["predictor"]
    env = _env(shadow)
    assert env["STORAGE_URI"] == "s3://sentiops/models/reviews/2/"
    assert env["SENTIOPS_MODEL_VERSION"] == "2" and env["SENTIOPS_SHADOW"] == "true"
    assert shadow["labels"]["sentiops.io/model-version"] == "2"
    assert "logger" not in shadow and "canaryTrafficPercent" not in shadow
    assert [c["name"] for c in shadow["containers"]] == ["kserve-container"]
    for key in ("serviceAccountName", "securityContext", "minReplicas"):
        assert shadow[key] == before["spec"]["predictor"][key]
    assert created["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Standard"}
    assert created["metadata"]["labels"]["sentiops.io/rollout"] == "shadow"
    # the mirror: one route per step's percent, then deleted at the promotion
    routes = controller.of("route", SHADOW)
    assert routes[-1] == "deleted"
    mirrors = [r["spec"]["rules"][0]["filters"][-1]["requestMirror"] for r in routes[:-1]]
    assert [m["percent"] for m in mirrors] == [10, 50, 100]
    assert {json.dumps(m["backendRef"], sort_keys=True) for m in mirrors} == {
        json.dumps(
            {"kind": "Service", "name": "reviews-shadow-predictor", "namespace": NS, "port": 80},
            sort_keys=True,
        )
    }
    route = routes[0]
    kserve = cluster_route(cluster)  # as stored: with the CRD's defaults
    rule = route["spec"]["rules"][0]
    # only the predictions are copied; clients are answered by KServe's stable backend
    assert [m["path"] for m in rule["matches"]] == [{"type": "Exact", "value": p} for p in PATHS]
    assert rule["backendRefs"] == kserve["spec"]["rules"][0]["backendRefs"]
    assert rule["filters"][0] == kserve["spec"]["rules"][0]["filters"][0]
    assert rule["timeouts"] == {"request": "60s"}
    assert route["spec"]["parentRefs"] == kserve["spec"]["parentRefs"]
    assert route["spec"]["hostnames"] == kserve["spec"]["hostnames"]
    assert all(not cel_rules(r) for r in routes[:-1])
    # the serving InferenceService was not touched while the shadow was judged; promotion
    # rolled it to the candidate (everything else as the chart rendered it)
    main = controller.of("isvc", NAME)
    # (generation 1: as created; 2: the candidate's model — dropping the annotation after it
    # changes no spec)
    assert [m["metadata"]["generation"] for m in main] == [1, 2]
    assert main[0]["metadata"]["generation"] == before["metadata"]["generation"]
    assert controller.mirror_at == {1: False, 2: False}  # the mirror went before serving changed
    after = ex.main.get()
    assert after is not None
    assert _env(after["spec"]["predictor"])["SENTIOPS_MODEL_VERSION"] == "2"
    assert PREVIOUS_ANNOTATION not in (after["metadata"].get("annotations") or {})
    for key in ("logger", "serviceAccountName", "securityContext", "minReplicas"):
        assert after["spec"]["predictor"][key] == before["spec"]["predictor"][key]
    assert ex.route() is None and ex.shadow.get() is None
    mine, stored = ex.route(NAME), cluster_route(cluster)  # KServe's own route untouched
    assert mine is not None and mine["spec"] == stored["spec"] == kserve["spec"]
    assert mine["metadata"]["generation"] == 1


def cluster_route(kube: ApiServer) -> dict:
    return json.loads(
        kube.kubectl("-n", NS, "get", f"{ROUTES}.{GATEWAY_GROUP}", NAME, "-o", "json").stdout
    )


def test_a_rejected_shadow_is_removed_and_the_serving_model_never_changed(
    cluster: ApiServer, controller: Controller
) -> None:
    ex = _executor(cluster, "3")
    before = ex.main.get()
    assert before is not None
    stable = before["spec"]["predictor"]["labels"]["sentiops.io/model-version"]
    skewed = Simulated({"mix": (0.05, 0.05, 0.9)}, canary_version="3")
    record = run(_plan("3", stable), ex, skewed, sleep=lambda s: None, progress=lambda m: None)
    assert record.decision == ROLLED_BACK and record.reasons[0].startswith("label_mix")
    time.sleep(0.3)
    assert controller.of("route", SHADOW)[-1] == "deleted"
    assert controller.of("isvc", SHADOW)[-1] == "deleted"
    assert controller.of("isvc", NAME) == []  # never patched: clients only ever got stable
    after = ex.main.get()
    assert after is not None and after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert ex.route() is None and ex.shadow.get() is None


def test_a_left_over_shadow_is_replaced_and_a_route_percent_is_patched_alone(
    cluster: ApiServer, controller: Controller
) -> None:
    """A rollout that died (no rollback ran) leaves a shadow behind: the next one starts
    afresh; `set_traffic` changes only the mirror's percent."""
    old = _executor(cluster, "4")
    old.start(10)
    ex = _executor(cluster, "5")
    ex.start(20)
    shadow = ex.shadow.get()
    assert shadow is not None and _env(shadow["spec"]["predictor"])["SENTIOPS_MODEL_VERSION"] == "5"
    first = ex.route()
    ex.set_traffic(70)
    second = ex.route()
    assert first is not None and second is not None
    (m1,), (m2,) = (
        [f for f in r["spec"]["rules"][0]["filters"] if f["type"] == "RequestMirror"]
        for r in (first, second)
    )
    assert (m1["requestMirror"]["percent"], m2["requestMirror"]["percent"]) == (20, 70)
    first["spec"]["rules"][0]["filters"][-1]["requestMirror"]["percent"] = 70
    assert second["spec"] == first["spec"]
    ex.rollback()
    assert ex.route() is None and ex.shadow.get() is None


def test_the_shadow_rules_give_the_pipeline_nothing_more(cluster: ApiServer) -> None:
    sa = f"system:serviceaccount:{NS}:sentiops-pipeline"
    isvc, route = f"inferenceservices.{GROUP}", f"{ROUTES}.{GATEWAY_GROUP}"
    assert cluster.can_i(sa, "delete", f"{isvc}/{SHADOW}", NS)
    assert cluster.can_i(sa, "delete", f"{route}/{SHADOW}", NS)
    assert cluster.can_i(sa, "get", f"{route}/{NAME}", NS)  # KServe's route, to copy its rule
    assert cluster.can_i(sa, "create", route, NS) and cluster.can_i(sa, "patch", route, NS)
    # never the serving InferenceService nor KServe's route, never anything namespace-wide
    assert not cluster.can_i(sa, "delete", f"{isvc}/{NAME}", NS)
    assert not cluster.can_i(sa, "delete", f"{route}/{NAME}", NS)
    assert not cluster.can_i(sa, "delete", route, NS)
    assert not cluster.can_i(sa, "delete", isvc, NS)
    assert not cluster.can_i(sa, "create", route, "default")


def test_a_shadow_is_refused_where_the_mirror_cannot_work(
    cluster: ApiServer, controller: Controller
) -> None:
    """Knative mode (the chart's default: Knative routes by Host and a mirrored request's Host
    gets '-shadow'), and Standard mode without KServe's Gateway API route; nothing is
    created either way."""
    with pytest.raises(RolloutError, match="runs in Knative mode"):
        _executor(cluster, "9", "sentiment").start(10)
    route = cluster_route(cluster)
    cluster.kubectl("-n", NS, "delete", f"{ROUTES}.{GATEWAY_GROUP}", NAME)
    try:
        with pytest.raises(RolloutError, match="enableGatewayApi"):
            _executor(cluster, "9").start(10)
    finally:
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            route["metadata"].pop(key, None)
        cluster.kubectl("create", "-f", "-", input=json.dumps(route))
    assert _executor(cluster, "9").shadow.get() is None


def test_the_mirror_route_of_a_dual_protocol_kserve_route() -> None:
    """KServe's route with a gRPC rule first (header match) and the REST rule second: the
    mirror copies the REST rule's backend, for the REST prediction paths only."""
    kserve = kserve_route()
    rest = kserve["spec"]["rules"][0]
    grpc = {
        **copy.deepcopy(rest),
        "matches": [
            {
                "path": {
                    "type": "RegularExpression",
                    "value": "^/inference\\.GRPCInferenceService/.*$",
                },
                "headers": [
                    {
                        "type": "RegularExpression",
                        "name": "content-type",
                        "value": "^application/grpc.*",
                    }
                ],
            }
        ],
        "backendRefs": [{**rest["backendRefs"][0], "port": 8081}],
    }
    kserve["spec"]["rules"] = [grpc, rest]
    out = mirror_route(kserve, SHADOW, NAME, "reviews-shadow-predictor", 30)
    (rule,) = out["spec"]["rules"]
    assert rule["backendRefs"] == rest["backendRefs"]
    assert rule["filters"][-1]["requestMirror"]["backendRef"]["port"] == 80
    assert not cel_rules(out)


def test_people_see_and_stop_a_shadow(
    cluster: ApiServer, controller: Controller, tmp_path: Path
) -> None:
    """`sentiops rollout status` shows a shadow in progress and its share; `rollback` removes
    the mirror and the shadow and rejects the candidate; serving never changed."""
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
    for v in ("1", "2"):
        registry.log_training(out, "t", {}, {}, {})
        registry.mark_candidate(v, f"s3://sentiops/models/{NAME}/{v}/", {"approved": True})
        if v == "1":
            registry.promote(v, "first")
    ex = _executor(cluster, "2")
    serving = ex.main.get()
    assert serving is not None
    ex.start(30)
    kubeconfig = str(cluster.kubeconfig_for("pipeline"))
    args = ["--namespace", NS, "--kubeconfig", kubeconfig]
    # the CLI acts on the ConfigMap's InferenceService: point it at this module's for a while
    patch = '{"data": {"inferenceService": "%s"}}'
    cluster.kubectl(
        "-n", NS, "patch", "configmap", "sentiops-rollout", "--type=merge", "-p", patch % NAME
    )
    try:
        runner = CliRunner()
        res = runner.invoke(app, ["rollout", "status", *args])
        assert res.exit_code == 0, res.output
        assert "shadow v2 in progress: 30% of the predictions copied to it" in res.output
        res = runner.invoke(app, ["rollout", "rollback", *args, "--reason", "too slow"])
        assert res.exit_code == 0, res.output
        assert "shadow v2 removed; serving v" in res.output
    finally:
        cluster.kubectl(
            "-n",
            NS,
            "patch",
            "configmap",
            "sentiops-rollout",
            "--type=merge",
            "-p",
            patch % "sentiment",
        )
    assert ex.route() is None and ex.shadow.get() is None
    after = ex.main.get()
    assert after is not None and after["spec"] == serving["spec"]
    assert "too slow" in registry.tags_of("2")["lifecycle.rejected_reason"]
    assert registry.version_of(registry.CHAMPION) == "1"
