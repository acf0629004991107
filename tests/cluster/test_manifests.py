"""Static checks of what we ship: kustomize overlays, the Helm chart, schemas, security.

Built-in kinds are validated with kubernetes-validate (strict), the InferenceService with
jsonschema against the real KServe 0.20 CRD (tests/cluster/crds). No server is needed here.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from .conftest import CHART, by_kind, helm_fails, helm_template, one
from .harness import REPO, REQUIRED_SET, REQUIRED_VALUES, crds_dir, run, secret_names, tool

CRD_GROUPS = ("serving.kserve.io", "monitoring.coreos.com", "security.istio.io")
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "InferenceService")


def all_renders(helm_docs, overlay_docs) -> dict[str, list[dict]]:
    return {"helm": helm_docs, **{f"kustomize:{k}": v for k, v in overlay_docs.items()}}


def pod_specs(doc: dict) -> list[dict]:
    """Pod-level specs of a workload (the ISVC predictor is an inline PodSpec)."""
    if doc["kind"] == "InferenceService":
        return [doc["spec"]["predictor"]]
    return [doc["spec"]["template"]["spec"]]


# ---------------------------------------------------------------- kustomize + helm


def test_overlays_build_with_the_same_objects_as_the_chart(helm_docs, overlay_docs) -> None:
    helm_ids = {(d["kind"], d["metadata"]["name"]) for d in helm_docs}
    for name, docs in overlay_docs.items():
        ids = {(d["kind"], d["metadata"]["name"]) for d in docs}
        assert ids - helm_ids == {("Namespace", "sentiops")}, name
        assert helm_ids <= ids, name
        assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
            "sentiops"
        }


def test_helm_lint_strict() -> None:
    out = run([tool("helm"), "lint", "--strict", str(CHART), *REQUIRED_SET]).stdout
    assert "0 chart(s) failed" in out
    # and with everything optional switched off / changed (feedback off: no token Secret needed)
    run(
        [
            tool("helm"),
            "lint",
            "--strict",
            str(CHART),
            "--set",
            "minio.enabled=false,mlflow.enabled=false,drift.enabled=false",
            "--set",
            "inferenceService.canary.enabled=false,inferenceService.logger.enabled=false",
            "--set",
            "monitoring.podMonitor.enabled=false,monitoring.prometheusRule.enabled=false",
            "--set",
            "inferenceService.feedback.enabled=false,evalSample.existingSecret=",
            "--set",
            "modelSigning.existingSecret=",
        ]
    )
    # the defaults alone: helm lint reports the chart's `fail` (:feedback needs a token Secret)
    # without failing, by its design for required values; `helm template`/`install` fail
    bare = run([tool("helm"), "lint", "--strict", str(CHART)], check=False)
    assert "needs auth.existingSecret" in bare.stdout + bare.stderr


def test_helm_default_isvc_has_canary_logger_and_drift_sidecar(helm_docs) -> None:
    isvc = one(helm_docs, "InferenceService", "sentiment")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    pred = isvc["spec"]["predictor"]
    assert pred["canaryTrafficPercent"] == 10
    assert pred["logger"] == {"mode": "all", "url": "http://localhost:9081/"}
    container, drift = pred["containers"]
    assert container["name"] == "kserve-container"  # KServe injects storage for this name
    assert container["image"] == "sentiops/serving:0.1.0"
    assert container["command"] == ["python", "-m", "serving"]
    assert container["args"] == [
        "--model_name=sentiment",
        "--model_dir=/mnt/models",
        "--http_port=8080",
        "--feedback_store=s3://sentiops",  # labels: the store the drift sidecar writes
        "--auth_token_file=/var/run/sentiops/tokens",  # and only with a token
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STORAGE_URI"] == "s3://sentiops/models/sentiment/1/"
    assert pred["serviceAccountName"] == "sentiops-predictor"
    assert pred["automountServiceAccountToken"] is False
    sa = one(helm_docs, "ServiceAccount", "sentiops-predictor")
    # KServe's storage-initializer: the predictor's own S3 identity, never the root user
    assert sa["secrets"] == [{"name": "sentiops-s3-predictor"}]
    # the logger's target: the drift sidecar in the same pod, on a port of its own
    assert drift["name"] == "drift" and drift["image"] == "sentiops/drift:0.1.0"
    assert drift["command"] == ["python", "-m", "drift"]
    denv = {e["name"]: e.get("value") for e in drift["env"]}
    assert denv["SENTIOPS_DRIFT_PORT"] == "9081" and denv["SENTIOPS_STORE"] == "s3://sentiops"
    assert denv["SENTIOPS_PREDICTOR_URL"] == "http://localhost:8080"
    # the poisoning guard: the share limit off by default, the excess limit on
    assert (denv["SENTIOPS_RETRAIN_MAX_TOKEN_SHARE"], denv["SENTIOPS_RETRAIN_MAX_EXCESS"]) == (
        "1",
        "0.3",
    )
    assert "ports" not in drift  # Knative: only the serving container declares ports
    assert "readinessProbe" not in drift  # drift never takes serving down
    assert drift["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 9081}
    assert {m["mountPath"] for m in drift["volumeMounts"]} == {
        "/tmp",
        "/var/run/sentiops/eval-sample",
        "/var/run/sentiops/model-verify",
    }
    assert not [
        d
        for d in helm_docs
        if d["metadata"]["name"] == "sentiops-drift" and d["kind"] in ("Deployment", "Service")
    ]
    # Prometheus scrapes the sidecar through the predictor pods' target, readdressed
    pm = one(helm_docs, "PodMonitor", "sentiops-drift")
    selector = pm["spec"]["selector"]["matchLabels"]
    assert selector == {"serving.kserve.io/inferenceservice": "sentiment"}
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_ip"],
        "targetLabel": "__address__",
        "replacement": "$1:9081",
    } in ep["relabelings"]
    rollout = one(helm_docs, "ConfigMap", "sentiops-rollout")
    assert rollout["data"]["canarySteps"] == "10,50,100"


def test_helm_drift_service_mode() -> None:
    docs = helm_template("drift.mode=service")
    pred = one(docs, "InferenceService", "sentiment")["spec"]["predictor"]
    assert pred["logger"]["url"] == "http://sentiops-drift.prod.svc.cluster.local:9081/"
    assert [c["name"] for c in pred["containers"]] == ["kserve-container"]
    svc = one(docs, "Service", "sentiops-drift")
    drift = one(docs, "Deployment", "sentiops-drift")
    assert svc["spec"]["ports"][0]["port"] == 9081
    pod_labels = drift["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (dc,) = drift["spec"]["template"]["spec"]["containers"]
    assert dc["ports"][0]["containerPort"] == 9081
    assert dc["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "SENTIOPS_PREDICTOR_URL" not in {e["name"] for e in dc["env"]}
    pm = one(docs, "PodMonitor", "sentiops-drift")
    assert pm["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "sentiops-drift"}
    for port in (8080, 8081):  # the predictor's HTTP and gRPC ports are refused
        assert "drift/port" in helm_fails(f"drift.port={port}")


def test_chart_model_uris_follow_the_core_layout(helm_docs) -> None:
    """The rollout ConfigMap's template and the predictor's STORAGE_URI use the layout the
    pipeline's register step writes (`sentiops.config.model_uri`), never a copy of it."""
    from sentiops.config import model_uri

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    bucket, isvc = f"s3://{values['s3']['bucket']}", values["inferenceService"]
    rollout = one(helm_docs, "ConfigMap", "sentiops-rollout")
    template = rollout["data"]["modelUriTemplate"]
    assert template.rstrip("/") == model_uri(bucket, "{version}", isvc["name"])
    env = {
        e["name"]: e.get("value")
        for c in one(helm_docs, "InferenceService", isvc["name"])["spec"]["predictor"]["containers"]
        for e in c.get("env", [])
    }
    version = str(isvc["modelVersion"])
    assert env["STORAGE_URI"].rstrip("/") == model_uri(bucket, version, isvc["name"])


def test_rollout_configmap_parses_to_the_judge_defaults(helm_docs) -> None:
    """The chart's rollout settings are what the executor reads, and its judge thresholds
    are JudgeConfig's defaults (the one place they are defined)."""
    from dataclasses import asdict

    from sentiops.rollout.judge import JudgeConfig
    from sentiops.rollout.kserve import RolloutSettings

    data = one(helm_docs, "ConfigMap", "sentiops-rollout")["data"]
    settings = RolloutSettings.from_configmap(data)
    assert asdict(settings.judge) == asdict(JudgeConfig())
    assert settings.steps == [10, 50, 100] and settings.prometheus_url.startswith("http://")
    assert settings.model_uri("7") == "s3://sentiops/models/sentiment/7/"


def test_helm_values_drive_the_render() -> None:
    docs = helm_template(
        "inferenceService.modelVersion=7",
        "inferenceService.canary.steps={5,25,100}",
        "images.serving.repository=reg.io/s,images.serving.tag=v7",
        "podSecurityContext.runAsUser=2000",
        "alerts.latencyP95Seconds=0.25",
        "s3.bucket=models",
        "drift.retrain.guard.maxTokenShare=0.9,drift.retrain.guard.maxExcess=0.25",
    )
    pred = one(docs, "InferenceService", "sentiment")["spec"]["predictor"]
    denv = {e["name"]: e.get("value") for e in pred["containers"][1]["env"]}
    assert denv["SENTIOPS_RETRAIN_MAX_TOKEN_SHARE"] == "0.9"
    assert denv["SENTIOPS_RETRAIN_MAX_EXCESS"] == "0.25"
    assert pred["canaryTrafficPercent"] == 5
    assert pred["securityContext"]["runAsUser"] == 2000
    c = pred["containers"][0]
    assert c["image"] == "reg.io/s:v7"
    assert {"name": "STORAGE_URI", "value": "s3://models/models/sentiment/7/"} in c["env"]
    assert pred["logger"]["url"] == "http://localhost:9081/"
    rule = one(docs, "PrometheusRule", "sentiops")
    exprs = [r.get("expr", "") for g in rule["spec"]["groups"] for r in g["rules"]]
    assert "sentiops:request_predict_seconds:p95_5m > 0.25" in exprs

    off = helm_template(
        "inferenceService.canary.enabled=false,inferenceService.logger.enabled=false",
        namespace=None,
    )
    pred = one(off, "InferenceService", "sentiment")["spec"]["predictor"]
    assert "canaryTrafficPercent" not in pred and "logger" not in pred


def test_derived_files_are_up_to_date() -> None:
    """manifests/base/generated and the chart's dashboard copy match their sources."""
    proc = run(
        [sys.executable, str(REPO / "scripts" / "cluster" / "render_manifests.py"), "--check"],
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_kinds_validate(helm_docs, overlay_docs, version: str) -> None:
    errors = []
    checked = 0
    for render, docs in all_renders(helm_docs, overlay_docs).items():
        for doc in docs:
            if doc["apiVersion"].split("/")[0] in CRD_GROUPS:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                checked += 1
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{render} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)
    assert checked >= 3 * 14


@pytest.fixture(scope="module")
def isvc_schema() -> dict:
    crd = yaml.safe_load((crds_dir() / "serving.kserve.io_inferenceservices.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return version["schema"]["openAPIV3Schema"]


def validate_isvc(doc: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def test_isvc_matches_the_real_crd_schema(helm_docs, overlay_docs, isvc_schema) -> None:
    for render, docs in all_renders(helm_docs, overlay_docs).items():
        isvc = one(docs, "InferenceService", "sentiment")
        assert validate_isvc(isvc, isvc_schema) == [], render


def test_crd_schema_check_is_not_vacuous(helm_docs, isvc_schema) -> None:
    isvc = copy.deepcopy(one(helm_docs, "InferenceService", "sentiment"))
    isvc["spec"]["predictor"]["logger"]["mode"] = "sometimes"
    isvc["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    errors = validate_isvc(isvc, isvc_schema)
    assert any("logger/mode" in e for e in errors)
    assert any("canaryTrafficPercent" in e for e in errors)


# ---------------------------------------------------------------- security + secrets


def test_workloads_are_locked_down(helm_docs, overlay_docs) -> None:
    problems = []
    for render, docs in all_renders(helm_docs, overlay_docs).items():
        workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
        assert len(workloads) == 4, render  # minio, mlflow, bucket job, isvc (+ drift sidecar)
        problems += lockdown_problems(render, docs)
    assert not problems, "\n".join(problems)


def lockdown_problems(render: str, docs: list[dict]) -> list[str]:
    """What is not locked down in the workloads of one render."""
    problems = []
    accounts = {d["metadata"]["name"]: d for d in by_kind(docs, "ServiceAccount")}
    for doc in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        where = f"{render} {doc['kind']}/{doc['metadata']['name']}"
        for spec in pod_specs(doc):
            # none of these pods talks to the Kubernetes API: no token in the pod (the pod
            # field, else its ServiceAccount's; KServe/Knative pods: the SA's)
            sa = accounts[spec["serviceAccountName"]]
            automount = spec.get(
                "automountServiceAccountToken", sa.get("automountServiceAccountToken", True)
            )
            if automount is not False:
                problems.append(f"{where}: mounts a ServiceAccount token")
            psc = spec.get("securityContext", {})
            if psc.get("runAsNonRoot") is not True or psc.get("runAsUser", 0) == 0:
                problems.append(f"{where}: pod may run as root")
            if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: no RuntimeDefault seccomp")
            for c in spec["containers"] + spec.get("initContainers", []):
                sc = c.get("securityContext", {})
                checks = {
                    "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
                    "allowPrivilegeEscalation=false": sc.get("allowPrivilegeEscalation") is False,
                    "drop ALL": sc.get("capabilities", {}).get("drop") == ["ALL"],
                    "no privileged": not sc.get("privileged", False),
                    "requests+limits": all(
                        k in c.get("resources", {}).get(kind, {})
                        for kind in ("requests", "limits")
                        for k in ("cpu", "memory")
                    ),
                }
                problems += [f"{where}/{c['name']}: {n}" for n, ok in checks.items() if not ok]
    return problems


def test_only_the_pipeline_account_mounts_a_token(helm_docs, overlay_docs) -> None:
    """The rollout/register steps need the API (their Role); nothing else gets a token: every
    pod template of every render (the InferenceService's predictor too, and the drift
    Deployment, PostgreSQL and the shadow mode's) says so itself, and so do the accounts."""
    renders = {
        **all_renders(helm_docs, overlay_docs),
        "service+postgresql+shadow": helm_template(
            "drift.mode=service", "mlflow.backend=postgresql", *SHADOW
        ),
    }
    for render, docs in renders.items():
        automount = {
            d["metadata"]["name"]: d.get("automountServiceAccountToken", True)
            for d in by_kind(docs, "ServiceAccount")
        }
        assert automount == {
            "sentiops-pipeline": True,
            "sentiops-predictor": False,
            "sentiops-workload": False,
        }, render
        workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
        assert len(workloads) >= 4, render
        for doc in workloads:
            for spec in pod_specs(doc):
                assert spec["automountServiceAccountToken"] is False, (render, doc["kind"])
                assert spec["serviceAccountName"] != "sentiops-pipeline", render


# (SENTIOPS_RETRAIN_MAX_TOKEN_SHARE is a share of labels per token, no credential; *_FILE is
# the path of a mounted Secret's key)
SECRET_ENV = re.compile(r"^(?!.*_FILE$).*(SECRET|PASSWORD|ACCESS_KEY|TOKEN(?!_SHARE))", re.I)


def test_no_plaintext_credentials(helm_docs, overlay_docs) -> None:
    for render, docs in all_renders(helm_docs, overlay_docs).items():
        assert not by_kind(docs, "Secret"), f"{render} renders a Secret"
        for doc in docs:
            for env in _walk_env(doc):
                if env["name"].endswith("_FILE"):  # the path of a mounted Secret's key
                    assert env["value"].startswith("/var/run/sentiops/"), env
                elif SECRET_ENV.search(env["name"]):
                    assert "value" not in env and "secretKeyRef" in env.get("valueFrom", {}), (
                        f"{render} {doc['metadata']['name']}: {env['name']} not from a Secret"
                    )
    shipped = [*(REPO / "manifests").rglob("*"), *(REPO / "helm").rglob("*")]
    for path in (p for p in shipped if p.is_file()):
        text = path.read_text(errors="replace")
        assert not re.search(r"(AWS_SECRET_ACCESS_KEY|MINIO_ROOT_PASSWORD)\s*[=:]\s*\w", text), path


def _walk_env(node: object):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                yield from value
            else:
                yield from _walk_env(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_env(value)


def test_dashboard_configmap_carries_the_dashboard(helm_docs) -> None:
    cm = one(helm_docs, "ConfigMap", "sentiops-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    source = json.loads(Path(REPO / "monitoring" / "dashboards" / "sentiops.json").read_text())
    assert json.loads(cm["data"]["sentiops.json"]) == source


# ---------------------------------------------------------------- network + write access


def _peers(rule: dict) -> list[dict]:
    return rule["from"]


def _ports(rule: dict) -> list[int]:
    assert all(p["protocol"] == "TCP" for p in rule["ports"])
    return [p["port"] for p in rule["ports"]]


GATEWAYS = [
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "knative-serving"}}},
    {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
        "podSelector": {"matchLabels": {"istio": "ingressgateway"}},
    },
]
PROMETHEUS = [
    {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
]


def test_predictor_network_policy(helm_docs, overlay_docs) -> None:
    """Every render: the predictor pods (all revisions) take requests from the gateways only
    (Knative mode: at the queue-proxy), and /metrics (model server + drift sidecar) from
    Prometheus only; the drift Deployment's policy exists only in service mode."""
    for render, docs in all_renders(helm_docs, overlay_docs).items():
        np = one(docs, "NetworkPolicy", "sentiops-predictor")
        assert np["apiVersion"] == "networking.k8s.io/v1", render
        spec = np["spec"]
        # the label KServe puts on every predictor pod, as the PodMonitor selects them
        pm = one(docs, "PodMonitor", "sentiops-predictor")["spec"]["selector"]
        assert (
            spec["podSelector"]
            == pm
            == {"matchLabels": {"serving.kserve.io/inferenceservice": "sentiment"}}
        ), render
        assert spec["policyTypes"] == ["Ingress"], render
        requests, metrics = spec["ingress"]
        assert _peers(requests) == GATEWAYS and _ports(requests) == [8012, 8013, 9090], render
        assert _peers(metrics) == PROMETHEUS and _ports(metrics) == [8080, 9081], render
        assert not by_kind(docs, "NetworkPolicy", "sentiops-drift"), render
        assert not by_kind(docs, "AuthorizationPolicy"), render


def test_network_policies_follow_the_values() -> None:
    docs = helm_template(
        "drift.mode=service",
        "inferenceService.deploymentMode=Standard",
        "networkPolicy.clients[0].matchLabels.app\\.kubernetes\\.io/name=sentiops-rollout",
        "networkPolicy.prometheus[0].namespaceSelector.matchLabels.name=observability",
    )
    prom = [{"namespaceSelector": {"matchLabels": {"name": "observability"}}}]
    requests, metrics = one(docs, "NetworkPolicy", "sentiops-predictor")["spec"]["ingress"]
    client = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "sentiops-rollout"}}}
    assert _peers(requests) == [*GATEWAYS, client]
    assert "namespaceSelector" not in client  # a bare podSelector: this namespace only
    assert _ports(requests) == [9081]  # Standard mode + logger: the KServe agent's port
    assert _peers(metrics) == prom and _ports(metrics) == [8080]  # no sidecar in service mode
    # the drift Deployment: CloudEvents from the predictor pods, /metrics from Prometheus
    drift_np = one(docs, "NetworkPolicy", "sentiops-drift")["spec"]
    pod_labels = one(docs, "Deployment", "sentiops-drift")["spec"]["template"]["metadata"]
    assert drift_np["podSelector"]["matchLabels"].items() <= pod_labels["labels"].items()
    assert drift_np["policyTypes"] == ["Ingress"]
    (rule,) = drift_np["ingress"]
    isvc_pods = {"matchLabels": {"serving.kserve.io/inferenceservice": "sentiment"}}
    predictor = {"podSelector": isvc_pods}
    assert _peers(rule) == [predictor, *prom] and _ports(rule) == [9081]

    raw = helm_template(
        "inferenceService.deploymentMode=RawDeployment", "inferenceService.logger.enabled=false"
    )
    requests, _ = one(raw, "NetworkPolicy", "sentiops-predictor")["spec"]["ingress"]
    assert _ports(requests) == [8080]  # no agent in front: the model server itself
    pinned = helm_template("networkPolicy.predictorPorts={8012}")
    requests, _ = one(pinned, "NetworkPolicy", "sentiops-predictor")["spec"]["ingress"]
    assert _ports(requests) == [8012]
    off = helm_template("networkPolicy.enabled=false", "drift.mode=service")
    assert not by_kind(off, "NetworkPolicy")
    closed = helm_template("networkPolicy.gateways=null", "networkPolicy.prometheus=null")
    assert one(closed, "NetworkPolicy", "sentiops-predictor")["spec"]["ingress"] == []


AUTH_SET = (
    "auth.existingSecret=sentiops-annotator-tokens",
    "auth.readsNeedToken=true",
    "inferenceService.rateLimit=20",
    "inferenceService.rateBurst=40",
    "s3.bucket=prod-bucket",
)


def test_feedback_goes_to_the_charts_store(helm_docs, overlay_docs) -> None:
    """`:feedback` works on a cluster: the model server stores labels in, and joins them with
    the prediction log of, the store the drift sidecar writes (s3://<s3.bucket>), reached
    with the same endpoint, each with its own S3 identity (a Secret, never a literal); off,
    it has neither the flag nor the credentials."""
    for render, docs in all_renders(helm_docs, overlay_docs).items():
        container, drift = one(docs, "InferenceService", "sentiment")["spec"]["predictor"][
            "containers"
        ]
        denv = {e["name"]: e for e in drift["env"]}
        store = denv["SENTIOPS_STORE"]["value"]
        assert f"--feedback_store={store}" in container["args"], render
        env = {e["name"]: e for e in container["env"]}
        for name in ("SENTIOPS_S3_ENDPOINT", "SENTIOPS_S3_REGION"):
            assert env[name] == denv[name], (render, name)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "sentiops-s3-predictor", "key": name}, render
            assert denv[name]["valueFrom"]["secretKeyRef"]["name"] == "sentiops-s3-drift"
    docs = helm_template("s3.bucket=elsewhere", "drift.enabled=false")
    (container,) = one(docs, "InferenceService", "sentiment")["spec"]["predictor"]["containers"]
    assert "--feedback_store=s3://elsewhere" in container["args"]  # without the sidecar too
    docs = helm_template("inferenceService.feedback.enabled=false")
    container = one(docs, "InferenceService", "sentiment")["spec"]["predictor"]["containers"][0]
    assert not [a for a in container["args"] if a.startswith("--feedback")]
    assert not {"AWS_ACCESS_KEY_ID", "SENTIOPS_S3_ENDPOINT"} & {e["name"] for e in container["env"]}


def test_token_secret_is_mounted_as_a_directory() -> None:
    docs = helm_template(*AUTH_SET)
    pred = one(docs, "InferenceService", "sentiment")["spec"]["predictor"]
    container, drift = pred["containers"]
    assert container["args"][3:] == [
        "--feedback_store=s3://prod-bucket",
        "--auth_token_file=/var/run/sentiops/tokens",
        "--auth_reads=true",
        "--rate_limit=20",
        "--rate_burst=40",
    ]
    assert {
        "name": "auth-tokens",
        "mountPath": "/var/run/sentiops/tokens",
        "readOnly": True,
    } in container["volumeMounts"]
    (volume,) = [v for v in pred["volumes"] if v["name"] == "auth-tokens"]
    assert volume["secret"] == {"secretName": "sentiops-annotator-tokens", "defaultMode": 0o440}
    # only the model server reads the tokens; the Secret is the user's, never rendered
    assert "auth-tokens" not in {m["name"] for m in drift["volumeMounts"]}
    assert not by_kind(docs, "Secret")
    # the objects are still valid with the volume (the CRD + built-in schemas run on the
    # default render; this one is checked by the apiserver test)
    assert {"name": "tmp", "emptyDir": {}} in pred["volumes"]


FEEDBACK_NEEDS_TOKENS = (
    "inferenceService.feedback.enabled=true needs auth.existingSecret: labels POSTed to "
    "/v1/models/sentiment:feedback become training data, so writing them must need a token."
)


def test_feedback_is_never_open_to_writes(helm_docs, overlay_docs) -> None:
    """Safe by default: with :feedback on (the default) and no token Secret the chart does not
    render, and says what to set; every render we ship mounts the token Secret; with feedback
    off no token is needed and nothing is mounted."""
    for render, docs in all_renders(helm_docs, overlay_docs).items():
        pred = one(docs, "InferenceService", "sentiment")["spec"]["predictor"]
        assert "--auth_token_file=/var/run/sentiops/tokens" in pred["containers"][0]["args"]
        (volume,) = [v for v in pred["volumes"] if v["name"] == "auth-tokens"]
        assert volume["secret"]["secretName"] == "sentiops-annotator-tokens", render
    for sets in ((), ("drift.mode=service",), ("auth.existingSecret=",)):
        err = helm_fails(*sets)
        assert FEEDBACK_NEEDS_TOKENS in err, err
        assert "set auth.existingSecret=sentiops-annotator-tokens" in err
        assert "or set inferenceService.feedback.enabled=false" in err
        assert "scripts/cluster/create-secrets.sh" in err and "openssl rand -hex 24" in err
    off = helm_template("inferenceService.feedback.enabled=false", required=False)
    pred = one(off, "InferenceService", "sentiment")["spec"]["predictor"]
    args = [a for c in pred["containers"] for a in c.get("args", [])]
    assert not [a for a in args if a.startswith(("--auth", "--rate", "--feedback"))]
    assert "auth-tokens" not in {v["name"] for v in pred["volumes"]}
    err = helm_fails("inferenceService.feedback.enabled=false", "auth.readsNeedToken=true")
    assert "auth.readsNeedToken needs auth.existingSecret" in err
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "WARNING" not in notes and "Feedback is off" in notes


# what `openssl rand -hex 24` / `sentiops auth token` make: 24+ characters of hex or
# urlsafe base64 with several digits in them (names and identifiers have none or few)
TOKENISH = re.compile(r"(?<![\w./-])(?=(?:[\w-]*\d){4})[\w-]{24,}(?![\w./-])|Bearer [A-Za-z0-9]")


def test_no_token_literal_anywhere(helm_default, overlay_yaml) -> None:
    """No token in values, templates or any render (a token is 16+ random characters: no
    long hex/base64 run may appear, nor a Bearer value); the chart only names the Secret."""
    import secrets

    assert TOKENISH.search(f"team-a: {secrets.token_hex(24)}")  # what the docs tell users
    assert TOKENISH.search("Authorization: Bearer x")
    with_auth = run(
        [tool("helm"), "template", "x", str(CHART), *[a for v in AUTH_SET for a in ("--set", v)]]
    ).stdout
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["auth"] == {"existingSecret": "", "readsNeedToken": False}
    texts = {"helm": helm_default, "helm+auth": with_auth, **overlay_yaml}
    for path in [*(CHART / "templates").iterdir(), CHART / "values.yaml"]:
        texts[str(path.relative_to(REPO))] = path.read_text()
    for where, text in texts.items():
        found = [m.group(0) for m in TOKENISH.finditer(text)]
        assert not found, f"{where}: token-like {found}"
        assert "kind: Secret\n" not in text, where


def test_authorization_policy_only_when_enabled(helm_docs) -> None:
    assert not by_kind(helm_docs, "AuthorizationPolicy")
    docs = helm_template("istio.authorizationPolicy.enabled=true")
    ap = one(docs, "AuthorizationPolicy", "sentiops-predictor")
    assert ap["apiVersion"] == "security.istio.io/v1"
    spec = ap["spec"]
    assert set(spec) == {"selector", "action", "rules"} and spec["action"] == "ALLOW"
    assert spec["selector"] == {"matchLabels": {"serving.kserve.io/inferenceservice": "sentiment"}}
    write, reads, system = spec["rules"]
    # a write: POST to this model's :feedback, only with a bearer Authorization header
    assert write["to"] == [
        {"operation": {"methods": ["POST"], "paths": ["/v1/models/sentiment:feedback"]}}
    ]
    assert write["when"] == [
        {"key": "request.headers[authorization]", "values": ["Bearer *", "bearer *"]}
    ]
    (op,) = [t["operation"] for t in reads["to"]]
    assert "when" not in reads and "from" not in reads
    assert "/v1/models/*" in op["paths"] and "/v2/health/*" in op["paths"]
    assert op["notPaths"] == ["*:feedback"]  # the read paths never cover the write
    assert system["from"] == [{"source": {"namespaces": ["knative-serving"]}}]
    assert system["to"] == [{"operation": {"notPaths": ["*:feedback"]}}]
    # Istio's own shape rules: paths exact, prefix (x*), suffix (*x) or presence (*) only;
    # keys from its condition list; operation/source fields from the v1 API
    ops = [t["operation"] for rule in spec["rules"] for t in rule["to"]]
    for o in ops:
        assert set(o) <= {"methods", "paths", "notPaths", "hosts", "ports", "notMethods"}
        for path in o.get("paths", []) + o.get("notPaths", []):
            assert path == "*" or path.count("*") <= 1 and not path.strip("*").count("*"), path
            assert path.startswith(("/", "*")), path
    for rule in spec["rules"]:
        assert set(rule) <= {"from", "to", "when"}
        for cond in rule.get("when", []):
            assert (
                re.fullmatch(r"request\.headers\[[a-z0-9-]+\]|request\.auth\.\w+", cond["key"])
                and cond["values"]
            )
    assert "readPaths" in helm_fails(
        *REQUIRED_VALUES,
        "istio.authorizationPolicy.enabled=true,istio.authorizationPolicy.readPaths=null",
    )


def test_everything_switched_on_still_validates() -> None:
    """NetworkPolicies, token volume and flags: strictly valid built-in kinds and an
    InferenceService the real CRD schema accepts, with the policy features all on."""
    docs = helm_template(
        *AUTH_SET,
        "drift.mode=service",
        "istio.authorizationPolicy.enabled=true",
        "networkPolicy.clients[0].matchLabels.app=x",
    )
    crd = yaml.safe_load((crds_dir() / "serving.kserve.io_inferenceservices.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    assert (
        validate_isvc(
            one(docs, "InferenceService", "sentiment"), version["schema"]["openAPIV3Schema"]
        )
        == []
    )
    for doc in docs:
        if doc["apiVersion"].split("/")[0] not in CRD_GROUPS:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    assert {d["metadata"]["name"] for d in by_kind(docs, "NetworkPolicy")} == {
        "sentiops-predictor",
        "sentiops-drift",
        "mlflow",
        "minio",
    }
    run(
        [
            tool("helm"),
            "lint",
            "--strict",
            str(CHART),
            *[a for v in AUTH_SET for a in ("--set", v)],
            "--set",
            "drift.mode=service,istio.authorizationPolicy.enabled=true",
        ]
    )


@pytest.mark.parametrize(
    "bad",
    [
        "inferenceService.logger.mode=sometimes",
        "inferenceService.canary.steps={5,250}",
        "inferenceService.deploymentMode=Serverful",
        "inferenceService.canary.mode=blue",
        "alerts.errorRatio=5",
        "alerts.latencyFor=ten",
        "inferenceServic.name=typo",
        "auth.existingSecret=Not_A_Name",
        "auth.token=abc",
        "networkPolicy.predictorPorts={0}",
        "networkPolicy.gateways[0].ipBlock.cidr=0.0.0.0/0",
        "inferenceService.rateLimit=-1",
        "drift.retrain.guard.maxTokenShare=0",
        "drift.retrain.guard.maxExcess=1.5",
        "mlflow.backend=mysql",
        "mlflow.postgresql.password=hunter2",
        "mlflow.postgresql.url=postgresql://u:p@h/db",
        "mlflow.postgresql.existingSecret=Not_A_Name",
        "mlflow.postgresql.database=my db",
        "mlflow.postgresql.passwordSecret=",
        "s3.secretName=sentiops-s3",  # one S3 key for all: gone (s3.identities)
        "s3.rootSecretName=",
        "s3.identities.drift.secretName=",
        "s3.identities.predictor.secretName=Not_A_Name",
        "s3.identities.console.secretName=x",
        "s3.identities.mlflow.accessKey=abc",
        "networkPolicy.pipeline[0].ipBlock.cidr=0.0.0.0/0",
        "networkPolicy.s3Clients[0].ipBlock.cidr=0.0.0.0/0",
        "evalSample.existingSecret=Not_A_Name",
        "evalSample.key=abc",
        "modelSigning.signingKey=abc",
    ],
)
def test_values_schema_rejects_bad_values(bad: str) -> None:
    proc = run([tool("helm"), "template", "x", str(CHART), "--set", bad], check=False)
    assert proc.returncode != 0 and "values don't meet the specifications" in proc.stderr, bad


# ---------------------------------------------------------------- MLflow's metadata on PostgreSQL

PG = "mlflow.backend=postgresql"


def _mlflow_container(docs: list[dict]) -> tuple[dict, dict[str, dict]]:
    (c,) = one(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"]
    return c, {e["name"]: e for e in c["env"]}


def _secret_ref(env: dict) -> dict:
    return env["valueFrom"]["secretKeyRef"]


def test_mlflow_on_sqlite_by_default(helm_docs) -> None:
    deploy = one(helm_docs, "Deployment", "mlflow")
    container, env = _mlflow_container(helm_docs)
    assert "--backend-store-uri=sqlite:////mlflow/mlflow.db" in container["args"]
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}  # one writer
    assert one(helm_docs, "PersistentVolumeClaim", "mlflow-data")
    assert "MLFLOW_BACKEND_STORE_URI" not in env
    assert not by_kind(helm_docs, "StatefulSet") and not by_kind(helm_docs, "Secret")


def test_mlflow_on_the_charts_postgresql() -> None:
    docs = helm_template(PG)
    # the password: the user's Secret (scripts/cluster/create-mlflow-db-secret.sh), never
    # rendered by the chart; MLflow and PostgreSQL read it
    assert not by_kind(docs, "Secret")
    for doc in docs:
        for env in _walk_env(doc):
            if SECRET_ENV.search(env["name"]):
                assert "secretKeyRef" in env.get("valueFrom", {}), env
    container, env = _mlflow_container(docs)
    password = {"name": "mlflow-postgresql", "key": "password"}
    assert _secret_ref(env["MLFLOW_DB_PASSWORD"]) == password
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"] == (
        "postgresql://mlflow:$(MLFLOW_DB_PASSWORD)@mlflow-postgresql.prod.svc.cluster.local:5432"
        "/mlflow"
    )
    names = list(env)  # Kubernetes expands $(VAR) only from variables defined before it
    assert names.index("MLFLOW_DB_PASSWORD") < names.index("MLFLOW_BACKEND_STORE_URI")
    assert not [a for a in container["args"] if a.startswith("--backend-store-uri")]
    assert "--artifacts-destination=s3://mlflow/artifacts" in container["args"]  # still S3
    assert not by_kind(docs, "PersistentVolumeClaim", "mlflow-data")
    assert "strategy" not in one(docs, "Deployment", "mlflow")["spec"]  # rolling: no file lock
    assert {
        v["name"] for v in one(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]["volumes"]
    } == {"tmp"}
    # the database: the official image, non-root, its data on a PVC per pod
    sts = one(docs, "StatefulSet", "mlflow-postgresql")
    assert sts["spec"]["serviceName"] == "mlflow-postgresql" and sts["spec"]["replicas"] == 1
    spec = sts["spec"]["template"]["spec"]
    (db,) = spec["containers"]
    assert db["image"] == "docker.io/library/postgres:15.14-bookworm"
    denv = {e["name"]: e for e in db["env"]}
    assert _secret_ref(denv["POSTGRES_PASSWORD"]) == password
    assert denv["POSTGRES_USER"]["value"] == "mlflow" and denv["POSTGRES_DB"]["value"] == "mlflow"
    assert denv["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    mounts = {m["mountPath"]: m["name"] for m in db["volumeMounts"]}
    assert mounts == {
        "/var/lib/postgresql/data": "data",
        "/var/run/postgresql": "run",
        "/tmp": "tmp",
    }
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert spec["securityContext"]["runAsUser"] == 1000
    assert lockdown_problems("postgresql", docs) == []
    # reached through its headless Service, only by the MLflow server
    svc = one(docs, "Service", "mlflow-postgresql")
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["ports"][0]["port"] == 5432
    (rule,) = one(docs, "NetworkPolicy", "mlflow-postgresql")["spec"]["ingress"]
    assert rule["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "mlflow",
                    "app.kubernetes.io/instance": "x",
                }
            }
        }
    ]
    assert [p["port"] for p in rule["ports"]] == [5432]
    for version in K8S_VERSIONS:
        for doc in docs:
            if doc["apiVersion"].split("/")[0] not in CRD_GROUPS:
                kubernetes_validate.validate(doc, version, strict=True)


def test_mlflow_postgresql_password_from_your_secret() -> None:
    docs = helm_template(
        PG,
        "mlflow.postgresql.passwordSecret=mlflow-db-password",
        "mlflow.postgresql.database=registry",
        "mlflow.postgresql.port=5433",
        "networkPolicy.enabled=false",
    )
    assert not by_kind(docs, "Secret") and not by_kind(docs, "NetworkPolicy")
    _, env = _mlflow_container(docs)
    assert _secret_ref(env["MLFLOW_DB_PASSWORD"])["name"] == "mlflow-db-password"
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].endswith(
        "@mlflow-postgresql.prod.svc.cluster.local:5433/registry"
    )
    (db,) = one(docs, "StatefulSet", "mlflow-postgresql")["spec"]["template"]["spec"]["containers"]
    denv = {e["name"]: e for e in db["env"]}
    assert _secret_ref(denv["POSTGRES_PASSWORD"])["name"] == "mlflow-db-password"
    assert denv["PGPORT"]["value"] == "5433" and db["ports"][0]["containerPort"] == 5433


def test_mlflow_on_an_existing_postgresql() -> None:
    docs = helm_template(
        PG, "mlflow.postgresql.existingSecret=mlflow-db", "mlflow.postgresql.existingSecretKey=uri"
    )
    assert not by_kind(docs, "StatefulSet") and not by_kind(docs, "Secret")
    assert not by_kind(docs, "Service", "mlflow-postgresql")
    assert not by_kind(docs, "NetworkPolicy", "mlflow-postgresql")
    container, env = _mlflow_container(docs)
    assert _secret_ref(env["MLFLOW_BACKEND_STORE_URI"]) == {"name": "mlflow-db", "key": "uri"}
    assert "MLFLOW_DB_PASSWORD" not in env
    assert not [a for a in container["args"] if a.startswith("--backend-store-uri")]
    assert lockdown_problems("existing", docs) == []


# ---------------------------------------------------------------- the shadow rollout

SHADOW = ("inferenceService.deploymentMode=Standard", "inferenceService.canary.mode=shadow")


def docs_shadow_rules() -> list[dict]:
    """The Role rules docs/pipeline.md says a shadow rollout needs (its YAML block)."""
    text = (REPO / "docs" / "pipeline.md").read_text()
    heading = text.index("**RBAC: what the chart's Role `sentiops-pipeline` adds in shadow mode**")
    start = text.index("```yaml\n", heading) + len("```yaml\n")
    return yaml.safe_load(text[start : text.index("```\n", start)])


def test_shadow_mode_renders_the_rollouts_rbac_and_reaches_the_shadows_pods() -> None:
    """inferenceService.canary.mode=shadow: the rollout ConfigMap says so; the pipeline's Role
    adds the documented rules (HTTPRoutes; delete on `<name>-shadow` only); the predictor's
    PodMonitor, NetworkPolicy and AuthorizationPolicy reach the shadow's pods, the drift
    PodMonitor does not; everything else renders as in canary mode."""
    from sentiops.rollout.kserve import RolloutSettings

    istio = "istio.authorizationPolicy.enabled=true"
    canary, docs = helm_template(SHADOW[0], istio), helm_template(*SHADOW, istio)
    data = one(docs, "ConfigMap", "sentiops-rollout")["data"]
    assert data["rolloutMode"] == "shadow"
    assert RolloutSettings.from_configmap(data).mode == "shadow"
    assert "rolloutMode" not in one(canary, "ConfigMap", "sentiops-rollout")["data"]
    rules = one(docs, "Role", "sentiops-pipeline")["rules"]
    assert rules == one(canary, "Role", "sentiops-pipeline")["rules"] + docs_shadow_rules()
    named = [r for r in rules if "delete" in r["verbs"]]
    assert named and all(r["resourceNames"] == ["sentiment-shadow"] for r in named)
    # the judge reads the shadow's series through the predictor's PodMonitor
    pm = one(docs, "PodMonitor", "sentiops-predictor")
    assert pm["spec"]["selector"] == {
        "matchExpressions": [
            {
                "key": "serving.kserve.io/inferenceservice",
                "operator": "In",
                "values": ["sentiment", "sentiment-shadow"],
            }
        ]
    }
    assert (
        pm["spec"]["podMetricsEndpoints"]
        == one(canary, "PodMonitor", "sentiops-predictor")["spec"]["podMetricsEndpoints"]
    )
    drift = one(docs, "PodMonitor", "sentiops-drift")["spec"]["selector"]
    assert drift == {"matchLabels": {"serving.kserve.io/inferenceservice": "sentiment"}}
    # the predictor's policies as in canary mode, and the same ones on the shadow's pods
    predictor = one(docs, "NetworkPolicy", "sentiops-predictor")
    assert predictor == one(canary, "NetworkPolicy", "sentiops-predictor")
    shadow = one(docs, "NetworkPolicy", "sentiops-predictor-shadow")
    assert shadow["metadata"]["labels"]["app.kubernetes.io/component"] == "shadow"
    assert shadow["spec"]["podSelector"] == {
        "matchLabels": {"serving.kserve.io/inferenceservice": "sentiment-shadow"}
    }
    (p_requests, p_metrics), (s_requests, s_metrics) = (
        predictor["spec"]["ingress"],
        shadow["spec"]["ingress"],
    )
    assert s_requests["from"] == p_requests["from"] and s_metrics["from"] == p_metrics["from"]
    # Standard mode: the predictor's requests pass the KServe agent (its logger, 9081); the
    # shadow has no logger, so they reach its model server; /metrics: no drift sidecar
    assert [p["port"] for p in p_requests["ports"]] == [9081]
    assert [p["port"] for p in s_requests["ports"]] == [8080]
    assert [p["port"] for p in s_metrics["ports"]] == [8080]
    assert [p["port"] for p in p_metrics["ports"]] == [8080, 9081]
    ap = one(docs, "AuthorizationPolicy", "sentiops-predictor")
    assert ap == one(canary, "AuthorizationPolicy", "sentiops-predictor")
    sap = one(docs, "AuthorizationPolicy", "sentiops-predictor-shadow")
    assert sap["spec"]["selector"] == {
        "matchLabels": {"serving.kserve.io/inferenceservice": "sentiment-shadow"}
    }
    assert {**sap["spec"], "selector": None} == {**ap["spec"], "selector": None}
    # nothing else differs from canary mode
    # the shadow's pods read the candidate model from MinIO (KServe's storage-initializer)
    (minio,) = one(docs, "NetworkPolicy", "minio")["spec"]["ingress"]
    shadow_pods = {
        "podSelector": {"matchLabels": {"serving.kserve.io/inferenceservice": "sentiment-shadow"}}
    }
    assert shadow_pods in minio["from"]
    (canary_minio,) = one(canary, "NetworkPolicy", "minio")["spec"]["ingress"]
    assert [p for p in minio["from"] if p != shadow_pods] == canary_minio["from"]
    ids = {(d["kind"], d["metadata"]["name"]) for d in docs}
    changed = {
        ("ConfigMap", "sentiops-rollout"),
        ("Role", "sentiops-pipeline"),
        ("PodMonitor", "sentiops-predictor"),
        ("NetworkPolicy", "minio"),
    }
    assert ids - {(d["kind"], d["metadata"]["name"]) for d in canary} == {
        ("NetworkPolicy", "sentiops-predictor-shadow"),
        ("AuthorizationPolicy", "sentiops-predictor-shadow"),
    }
    for doc in canary:
        if (doc["kind"], doc["metadata"]["name"]) not in changed:
            assert doc in docs, (doc["kind"], doc["metadata"]["name"])
    for version in K8S_VERSIONS:
        for doc in docs:
            if doc["apiVersion"].split("/")[0] not in CRD_GROUPS:
                kubernetes_validate.validate(doc, version, strict=True)
    run(
        [
            tool("helm"),
            "lint",
            "--strict",
            str(CHART),
            *REQUIRED_SET,
            "--set",
            ",".join((*SHADOW, istio)),
        ]
    )


def test_shadow_mode_in_the_default_render_is_off(helm_default, helm_docs) -> None:
    """The defaults are canary mode: no shadow rule, selector or policy anywhere."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["inferenceService"]["canary"]["mode"] == "canary"
    assert "shadow" not in helm_default
    rules = one(helm_docs, "Role", "sentiops-pipeline")["rules"]
    assert {g for r in rules for g in r["apiGroups"]} == {"serving.kserve.io", ""}


def test_shadow_ports_follow_the_predictor_ports_override() -> None:
    docs = helm_template(
        *SHADOW, "networkPolicy.predictorPorts={9081,8443}", "inferenceService.logger.enabled=false"
    )
    for name, ports in (
        ("sentiops-predictor", [9081, 8443]),
        ("sentiops-predictor-shadow", [9081, 8443, 8080]),
    ):
        requests = one(docs, "NetworkPolicy", name)["spec"]["ingress"][0]
        assert [p["port"] for p in requests["ports"]] == ports, name
    docs = helm_template(*SHADOW, "inferenceService.logger.enabled=false")
    for name in ("sentiops-predictor", "sentiops-predictor-shadow"):
        requests = one(docs, "NetworkPolicy", name)["spec"]["ingress"][0]
        assert [p["port"] for p in requests["ports"]] == [8080], name
    off = helm_template(*SHADOW, "networkPolicy.enabled=false")
    assert not [d["metadata"]["name"] for d in by_kind(off, "NetworkPolicy")]


@pytest.mark.parametrize("mode", ["Knative", "Serverless"])
def test_shadow_mode_needs_kserves_standard_mode(mode: str) -> None:
    """A shadow is mirrored by KServe's Gateway API ingress: with Knative the render fails
    saying what to set; RawDeployment (Standard's older name) renders."""
    stderr = helm_fails(
        *REQUIRED_VALUES,
        f"inferenceService.canary.mode=shadow,inferenceService.deploymentMode={mode}",
    )
    assert (
        "inferenceService.canary.mode=shadow needs inferenceService.deploymentMode=Standard"
        in stderr
    )
    assert "ingress.enableGatewayApi" in stderr and f"in {mode} mode" in stderr
    docs = helm_template(
        "inferenceService.canary.mode=shadow", "inferenceService.deploymentMode=RawDeployment"
    )
    assert one(docs, "ConfigMap", "sentiops-rollout")["data"]["rolloutMode"] == "shadow"


# ---------------------------------------------------------------- S3 identities and policies

IDENTITIES = ("predictor", "drift", "mlflow", "pipeline")
#: The policies the chart renders: the labelling receiver's too (its MinIO user is created only
#: while labelling.enabled: tests/cluster/test_labelling_chart.py).
POLICIES = (*IDENTITIES, "labelling")
S3_SECRETS = {
    "root": "sentiops-s3-root",
    "predictor": "sentiops-s3-predictor",
    "drift": "sentiops-s3-drift",
    "mlflow": "sentiops-s3-mlflow",
    "pipeline": "sentiops-s3",
}


def s3_secrets_by_container(docs: list[dict], secrets: dict[str, str]) -> dict[str, set[str]]:
    """`<kind>/<name>/<container>` -> the S3 identities (keys of `secrets`) it references,
    through its env or through a volume it mounts."""
    by_name = {name: ident for ident, name in secrets.items()}
    out = {}
    for doc in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        for spec in pod_specs(doc):
            volumes = {v["name"]: secret_names(v) for v in spec.get("volumes", [])}
            for c in spec["containers"] + spec.get("initContainers", []):
                names = secret_names(c.get("env", [])) | secret_names(c.get("envFrom", []))
                for mount in c.get("volumeMounts", []):
                    names |= volumes.get(mount["name"], set())
                key = f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}"
                out[key] = {by_name[n] for n in names if n in by_name}
    return out


def test_each_component_has_its_own_s3_identity(helm_docs, overlay_docs) -> None:
    """No container but MinIO's and the bucket Job's sees the root user; every other one only
    its own identity: the model server the predictor's, the drift detector (sidecar or
    Deployment) the drift's, MLflow the MLflow's. The Job creates every identity's user.
    KServe's storage-initializer reads the predictor's (its ServiceAccount's Secret)."""
    job = {"Job/minio-create-buckets/mc": {"root", *IDENTITIES}}
    expected = {
        "InferenceService/sentiment/kserve-container": {"predictor"},
        "InferenceService/sentiment/drift": {"drift"},
        "Deployment/mlflow/mlflow": {"mlflow"},
        "Deployment/minio/minio": {"root"},
        **job,
    }
    for render, docs in all_renders(helm_docs, overlay_docs).items():
        assert s3_secrets_by_container(docs, S3_SECRETS) == expected, render
        sa = one(docs, "ServiceAccount", "sentiops-predictor")
        assert sa["secrets"] == [{"name": "sentiops-s3-predictor"}], render
    docs = helm_template("drift.mode=service", "mlflow.backend=postgresql")
    assert s3_secrets_by_container(docs, S3_SECRETS) == {
        "InferenceService/sentiment/kserve-container": {"predictor"},
        "Deployment/sentiops-drift/drift": {"drift"},
        "Deployment/mlflow/mlflow": {"mlflow"},
        "Deployment/minio/minio": {"root"},
        "StatefulSet/mlflow-postgresql/postgresql": set(),
        **job,
    }
    # the names are values; an external S3 (no MinIO): no root user anywhere
    names = {"root": "r", "predictor": "p", "drift": "d", "mlflow": "m", "pipeline": "k"}
    sets = [f"s3.identities.{i}.secretName={names[i]}" for i in IDENTITIES]
    docs = helm_template("s3.rootSecretName=r", *sets)
    assert s3_secrets_by_container(docs, names) == expected
    assert one(docs, "ServiceAccount", "sentiops-predictor")["secrets"] == [{"name": "p"}]
    docs = helm_template("minio.enabled=false", "s3.endpoint=s3.example.com", *sets)
    assert s3_secrets_by_container(docs, names) == {
        k: v for k, v in expected.items() if "minio" not in k
    }
    assert "r" not in secret_names(docs) and "sentiops-s3-root" not in secret_names(docs)
    # feedback off: the model server has no S3 credentials at all (the storage-initializer
    # still reads the predictor's through the ServiceAccount)
    docs = helm_template("inferenceService.feedback.enabled=false")
    found = s3_secrets_by_container(docs, S3_SECRETS)
    assert found["InferenceService/sentiment/kserve-container"] == set()


def s3_policies(docs: list[dict]) -> dict[str, dict]:
    """The IAM policy documents the bucket Job gives MinIO (ConfigMap sentiops-s3-policies)."""
    data = one(docs, "ConfigMap", "sentiops-s3-policies")["data"]
    assert set(data) == {f"{i}.json" for i in POLICIES}
    return {name.removesuffix(".json"): json.loads(text) for name, text in data.items()}


def iam_allows(policy: dict, action: str, arn: str) -> bool:
    """IAM's evaluation for these documents: an explicit Deny wins, else any Allow; `*` in a
    resource matches any characters (also `/`). The documents use nothing else (checked)."""
    import fnmatch

    assert policy["Version"] == "2012-10-17"
    allowed = False
    for st in policy["Statement"]:
        assert set(st) <= {"Sid", "Effect", "Action", "Resource"}, st  # no conditions etc.
        assert all(a.startswith("s3:") and "*" not in a for a in st["Action"]), st
        if action in st["Action"] and any(fnmatch.fnmatchcase(arn, r) for r in st["Resource"]):
            if st["Effect"] == "Deny":
                return False
            assert st["Effect"] == "Allow"
            allowed = True
    return allowed


def _arn(uri: str) -> str:
    assert uri.startswith("s3://")
    return "arn:aws:s3:::" + uri.removeprefix("s3://")


@pytest.mark.parametrize(("bucket", "mlflow"), [("sentiops", "mlflow"), ("prod-data", "prod-ml")])
def test_s3_policies_follow_the_store_layout(bucket: str, mlflow: str) -> None:
    """What each identity may do, on the object keys the code itself writes
    (sentiops.store.layout, sentiops.config.model_uri, the feedback API's prefix): the predictor
    reads models, predictions and labels and writes only labels/feedback/; the drift detector
    reads models, labels and released records and writes the prediction log, the labelling
    queue and its retrain records but never retrain/released/ (that would skip the poisoning
    guard); MLflow only its bucket; the pipeline both buckets; the labelling receiver reads the
    queue, the prediction log (the random sample) and the feedback labels and writes only
    labels/feedback/."""
    from datetime import UTC, datetime

    from sentiops.config import model_uri
    from sentiops.feedback.labels import feedback_prefix
    from sentiops.store import layout

    store, now = f"s3://{bucket}", datetime(2026, 5, 1, tzinfo=UTC)
    model = model_uri(store, "3", "sentiment")
    keys = {
        "model": f"{model}/model.json",
        "detector": f"{model}/drift/reference.npz",
        "prediction": layout.prediction_part(store, "3", now),
        "labelling": layout.labelling_part(store, "3", now),
        "feedback": f"{feedback_prefix(store)}/date=2026-05-01/part-120000-abcd1234.parquet",
        "label": layout.join(store, layout.LABELS, "reviews", "batch-1.csv"),
        "trigger": layout.trigger_record(store, now),
        "held": layout.held_record(store, "3", now),
        "released": layout.held_record(store, "3", now, released=True),
        "artifact": f"s3://{mlflow}/artifacts/1/abc/artifacts/model/model.pkl",
    }
    assert keys["released"].startswith(f"{store}/retrain/released/")
    reads = {
        "predictor": {"model", "detector", "prediction", "feedback", "label"},
        "drift": {"model", "detector", "feedback", "label", "released"},
        "mlflow": {"artifact"},
        "pipeline": set(keys),
        # the labelling receiver: the queue, the random sample, what is labelled already
        "labelling": {"prediction", "labelling", "feedback"},
    }
    writes = {
        "predictor": {"feedback"},
        "drift": {"prediction", "labelling", "trigger", "held"},
        "mlflow": {"artifact"},
        "pipeline": set(keys),
        "labelling": {"feedback"},
    }
    deletes = {
        "predictor": set(),
        "drift": set(),
        "mlflow": {"artifact"},
        "pipeline": set(keys),
        "labelling": set(),
    }
    lists = {
        "predictor": {bucket},
        "drift": {bucket},
        "mlflow": {mlflow},
        "pipeline": {bucket, mlflow},
        "labelling": {bucket},
    }
    policies = s3_policies(helm_template(f"s3.bucket={bucket}", f"s3.mlflowBucket={mlflow}"))
    wrong = []
    for ident, policy in policies.items():
        for what, uri in keys.items():
            for action, may in (
                ("s3:GetObject", reads),
                ("s3:PutObject", writes),
                ("s3:DeleteObject", deletes),
            ):
                if iam_allows(policy, action, _arn(uri)) != (what in may[ident]):
                    wrong.append(
                        f"{ident}: {action} {what} ({uri}) should be "
                        f"{'allowed' if what in may[ident] else 'denied'}"
                    )
            if what in writes[ident]:  # multipart uploads of big files
                assert iam_allows(policy, "s3:AbortMultipartUpload", _arn(uri)), (ident, what)
        for b in (bucket, mlflow, "other-bucket"):
            for action in ("s3:ListBucket", "s3:GetBucketLocation"):
                if iam_allows(policy, action, f"arn:aws:s3:::{b}") != (b in lists[ident]):
                    wrong.append(f"{ident}: {action} on {b}")
        for admin in ("s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketPolicy"):
            if iam_allows(policy, admin, f"arn:aws:s3:::{bucket}"):
                wrong.append(f"{ident}: {admin}")
    assert not wrong, "\n".join(wrong)
    # the drift detector's write to retrain/ is cut by an explicit Deny on released/ (an Allow
    # added elsewhere, e.g. a group policy, cannot reopen it)
    (deny,) = [s for s in policies["drift"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Resource"] == [f"arn:aws:s3:::{bucket}/retrain/released/*"]
    assert set(deny["Action"]) == {"s3:PutObject", "s3:DeleteObject"}


def documented_policies() -> dict[str, dict]:
    """The IAM policies docs/security-cluster.md gives for an external S3 (default buckets)."""
    text = (REPO / "docs" / "security-cluster.md").read_text()
    found = re.findall(
        r"^\*\*(\w+)\*\* \(Secret `[^`]+`[^\n]*\n+```json\n(.*?)```", text, re.M | re.S
    )
    return {name: json.loads(body) for name, body in found}


def test_documented_policies_are_the_charts(helm_docs) -> None:
    """An external S3 gets the same policies as the chart's MinIO: the documented JSON equals
    what the chart renders (default buckets), identity by identity."""
    assert documented_policies() == s3_policies(helm_docs)


def test_the_bucket_job_creates_each_identity_with_its_policy(helm_docs, overlay_docs) -> None:
    """The Job mounts the policies and, for every identity, creates the policy, the user (the
    identity Secret's access key) and attaches one to the other; a second run (every helm
    upgrade, every `make deploy`) only repeats what exists."""
    for render, docs in all_renders(helm_docs, overlay_docs).items():
        job = one(docs, "Job", "minio-create-buckets")["spec"]["template"]["spec"]
        (c,) = job["containers"]
        script = c["args"][0]
        env = {e["name"]: e for e in c["env"]}
        for ident in IDENTITIES:
            up = ident.upper()
            assert f'identity {ident} "${up}_ACCESS_KEY" "${up}_SECRET_KEY"' in script, render
            for var, key in (
                (f"{up}_ACCESS_KEY", "AWS_ACCESS_KEY_ID"),
                (f"{up}_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"),
            ):
                ref = env[var]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": S3_SECRETS[ident], "key": key}, render
        assert 'mc admin policy create s3 "sentiops-$1" "/policies/$1.json"' in script
        assert 'mc admin user add s3 "$2" "$3"' in script
        assert 'mc admin policy attach s3 "sentiops-$1" --user "$2"' in script
        assert '*"already in effect"*) ;;' in script  # attach twice: MinIO refuses, no harm
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == (
            "sentiops-s3-root"
        )
        mount = {m["name"]: m for m in c["volumeMounts"]}["policies"]
        assert mount == {"name": "policies", "mountPath": "/policies", "readOnly": True}
        (vol,) = [v for v in job["volumes"] if v["name"] == "policies"]
        assert vol["configMap"]["name"] == "sentiops-s3-policies"
        assert s3_policies(docs) == s3_policies(helm_docs)
    assert not by_kind(
        helm_template("minio.createBuckets=false"), "ConfigMap", "sentiops-s3-policies"
    )


def test_kustomize_base_is_rendered_with_the_required_values() -> None:
    """scripts/cluster/render_manifests.py sets what these tests set (and `make deploy-helm`)."""
    import importlib.util

    path = REPO / "scripts" / "cluster" / "render_manifests.py"
    spec = importlib.util.spec_from_file_location("render_manifests", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert tuple(module.BASE_VALUES) == REQUIRED_VALUES
    makefile = (REPO / "mk" / "cluster.mk").read_text()
    for value in REQUIRED_VALUES:
        assert f"--set {value}" in makefile


# ---------------------------------------------------------------- the two key Secrets

SAMPLE_ENV = ("SENTIOPS_SAMPLE_SECRET_FILE", "/var/run/sentiops/eval-sample/key")
VERIFY_ENV = ("SENTIOPS_MODEL_VERIFY_KEY_FILE", "/var/run/sentiops/model-verify/verify.pub")


def key_files(container: dict, volumes: list[dict]) -> dict[str, tuple[str, str, list]]:
    """env name -> (its file, the Secret it comes from, the Secret's keys mounted) for each
    *_FILE variable of a container; the file must be in a read-only mount of that Secret."""
    by_name = {v["name"]: v for v in volumes}
    out = {}
    for env in container.get("env", []):
        if not env["name"].endswith("_FILE"):
            continue
        path = env["value"]
        (mount,) = [
            m
            for m in container["volumeMounts"]
            if path.startswith(m["mountPath"].rstrip("/") + "/")
        ]
        assert mount.get("readOnly") is True, mount
        secret = by_name[mount["name"]]["secret"]
        keys = [i["key"] for i in secret.get("items", [])]
        assert path.removeprefix(mount["mountPath"] + "/") in keys, (path, keys)
        out[env["name"]] = (path, secret["secretName"], keys)
    return out


def test_key_secrets_reach_the_predictor_and_the_drift_detector(helm_docs, overlay_docs) -> None:
    """The evaluation-sample key and the model-signing public key are mounted read-only into
    the model server and the drift container (sidecar or Deployment), each with its _FILE
    variable; of the signing Secret only verify.pub, never the private signing.key."""
    want = {
        SAMPLE_ENV[0]: (SAMPLE_ENV[1], "sentiops-eval-sample", ["key"]),
        VERIFY_ENV[0]: (VERIFY_ENV[1], "sentiops-model-signing", ["verify.pub"]),
    }
    for render, docs in all_renders(helm_docs, overlay_docs).items():
        pred = one(docs, "InferenceService", "sentiment")["spec"]["predictor"]
        for c in pred["containers"]:
            assert key_files(c, pred["volumes"]) == want, (render, c["name"])
        for doc in docs:
            assert "signing.key" not in json.dumps(doc), (render, doc["metadata"]["name"])
    docs = helm_template(
        "drift.mode=service",
        "evalSample.existingSecret=sample",
        "modelSigning.existingSecret=signing",
    )
    named = {
        SAMPLE_ENV[0]: (SAMPLE_ENV[1], "sample", ["key"]),
        VERIFY_ENV[0]: (VERIFY_ENV[1], "signing", ["verify.pub"]),
    }
    pred = one(docs, "InferenceService", "sentiment")["spec"]["predictor"]
    (c,) = pred["containers"]
    assert key_files(c, pred["volumes"]) == named
    spec = one(docs, "Deployment", "sentiops-drift")["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert key_files(c, spec["volumes"]) == named
    # nothing else gets a key
    for doc in (d for d in docs if d["kind"] in ("Deployment", "Job", "StatefulSet")):
        if doc["metadata"]["name"] != "sentiops-drift":
            assert not {"sample", "signing"} & secret_names(doc), doc["metadata"]["name"]
    # signing off: no verify key; the sample key stays
    docs = helm_template("modelSigning.existingSecret=")
    pred = one(docs, "InferenceService", "sentiment")["spec"]["predictor"]
    for c in pred["containers"]:
        assert key_files(c, pred["volumes"]) == {SAMPLE_ENV[0]: want[SAMPLE_ENV[0]]}


def test_the_eval_sample_secret_is_required_while_feedback_or_drift_is_on() -> None:
    message = (
        "evalSample.existingSecret is empty, but the predictor "
        "(inferenceService.feedback.enabled) and the drift detector (drift.enabled) "
        "need the evaluation-sample key."
    )
    for sets in ((), ("inferenceService.feedback.enabled=false",), ("drift.enabled=false",)):
        err = helm_fails(*REQUIRED_VALUES, "evalSample.existingSecret=", *sets)
        assert message in err and "set evalSample.existingSecret=sentiops-eval-sample" in err
        assert "openssl rand -hex 32" in err
    docs = helm_template(
        "evalSample.existingSecret=",
        "inferenceService.feedback.enabled=false",
        "drift.enabled=false",
        required=False,
    )
    (c,) = one(docs, "InferenceService", "sentiment")["spec"]["predictor"]["containers"]
    assert SAMPLE_ENV[0] not in {e["name"] for e in c["env"]}


# ---------------------------------------------------------------- MLflow and MinIO policies

PIPELINE_PODS = [
    {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}},
        "podSelector": {"matchLabels": {"pipelines.kubeflow.org/v2_component": "true"}},
    }
]


def pods_selected(docs: list[dict], selector: dict) -> set[str]:
    """The workloads of a render whose pod template labels a matchLabels selector selects
    (the InferenceService's predictor pods carry KServe's label)."""
    out = set()
    for doc in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        if doc["kind"] == "InferenceService":
            labels = {
                "serving.kserve.io/inferenceservice": doc["metadata"]["name"],
                **doc["spec"]["predictor"].get("labels", {}),
            }
        else:
            labels = doc["spec"]["template"]["metadata"]["labels"]
        if selector["matchLabels"].items() <= labels.items():
            out.add(f"{doc['kind']}/{doc['metadata']['name']}")
    assert set(selector) == {"matchLabels"}, selector
    return out


def _reached(docs: list[dict], policy: dict) -> tuple[set[str], list[dict], list[int]]:
    """(workloads of this namespace a policy's peers select, its other peers, its ports)."""
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    local, other = set(), []
    for peer in rule["from"]:
        if set(peer) == {"podSelector"}:
            selected = pods_selected(docs, peer["podSelector"])
            assert selected, f"peer {peer} selects no pod of the render"
            local |= selected
        else:
            other.append(peer)
    return local, other, _ports(rule)


def test_mlflow_and_minio_network_policies(helm_docs, overlay_docs) -> None:
    """MLflow (no authentication of its own) takes connections from the pipeline's step pods
    only; MinIO's S3 port from the pods that use S3 (the predictor pods, MLflow, the bucket
    Job) and the pipeline's step pods; MinIO's console port from nobody."""
    for render, docs in all_renders(helm_docs, overlay_docs).items():
        mlflow = one(docs, "NetworkPolicy", "mlflow")
        assert pods_selected(docs, mlflow["spec"]["podSelector"]) == {"Deployment/mlflow"}
        assert _reached(docs, mlflow) == (set(), PIPELINE_PODS, [5000]), render
        minio = one(docs, "NetworkPolicy", "minio")
        assert pods_selected(docs, minio["spec"]["podSelector"]) == {"Deployment/minio"}
        assert _reached(docs, minio) == (
            {"InferenceService/sentiment", "Deployment/mlflow", "Job/minio-create-buckets"},
            PIPELINE_PODS,
            [9000],
        ), render
    # service mode: the drift Deployment writes the store too; more peers from the values
    extra = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}
    docs = helm_template(
        "drift.mode=service",
        "mlflow.backend=postgresql",
        "networkPolicy.mlflowClients[0].namespaceSelector.matchLabels"
        ".kubernetes\\.io/metadata\\.name=ops",
        "networkPolicy.s3Clients[0].namespaceSelector.matchLabels"
        ".kubernetes\\.io/metadata\\.name=ops",
    )
    assert _reached(docs, one(docs, "NetworkPolicy", "minio")) == (
        {
            "InferenceService/sentiment",
            "Deployment/sentiops-drift",
            "Deployment/mlflow",
            "Job/minio-create-buckets",
        },
        [*PIPELINE_PODS, extra],
        [9000],
    )
    assert _reached(docs, one(docs, "NetworkPolicy", "mlflow")) == (
        set(),
        [*PIPELINE_PODS, extra],
        [5000],
    )
    # no peer: closed; components switched off: no policy of theirs, no peer on MinIO's
    closed = helm_template("networkPolicy.pipeline=null")
    assert one(closed, "NetworkPolicy", "mlflow")["spec"]["ingress"] == []
    docs = helm_template("mlflow.enabled=false", "minio.createBuckets=false")
    assert not by_kind(docs, "NetworkPolicy", "mlflow")
    assert _reached(docs, one(docs, "NetworkPolicy", "minio"))[0] == {"InferenceService/sentiment"}
    assert not by_kind(helm_template("minio.enabled=false"), "NetworkPolicy", "minio")
