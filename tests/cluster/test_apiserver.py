"""A real kube-apiserver (+ etcd) on loopback accepts what we ship, and RBAC is least-privilege.

Installs the KServe CRDs (server-side: the InferenceService CRD is ~2 MB), `helm install`s the
chart, applies both kustomize overlays server-side and asks `kubectl auth can-i` as the
pipeline ServiceAccounts. Nothing reconciles (no controller-manager, no KServe controller):
this proves schema, admission and RBAC, not that pods run.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from .harness import (
    REPO,
    REQUIRED_SET,
    ApiServer,
    crd_for_apiserver_1_20,
    crds_dir,
    httproute_crd_for_apiserver_1_20,
    run,
    secret_names,
    tool,
)

pytestmark = pytest.mark.integration

# The Prometheus-operator kinds the chart uses. Their CRDs are not in tests/cluster/crds; these
# stand-ins only register the kinds (schema: preserve unknown fields) so the objects can be
# stored. Their content is checked by promtool and the structural tests instead.
MONITORING_CRDS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: podmonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: PodMonitor, plural: podmonitors, singular: podmonitor, listKind: PodMonitorList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: prometheusrules.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names:
    kind: PrometheusRule
    plural: prometheusrules
    singular: prometheusrule
    listKind: PrometheusRuleList
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""

PIPELINE_SA = "system:serviceaccount:{ns}:sentiops-pipeline"
KFP_RUNNER = "system:serviceaccount:kubeflow:pipeline-runner"
#: Where create-secrets.sh puts the pipeline's Secrets in these tests (KFP_NAMESPACE).
KFP_NS = "sentiops-kfp"


def create_secrets(kube: ApiServer, namespace: str, config: Path) -> str:
    """scripts/cluster/create-secrets.sh against the test API server; its output."""
    env = {
        **kube.env,
        "NAMESPACE": namespace,
        "KFP_NAMESPACE": KFP_NS,
        "SENTIOPS_CONFIG_DIR": str(config),
        "KUBECTL": tool("kubectl"),
        "OPENSSL": tool("openssl"),
    }
    env.pop("S3_ENV_FILE", None)
    return run(["bash", str(REPO / "scripts" / "cluster" / "create-secrets.sh")], env=env).stdout


@pytest.fixture(scope="module")
def installed(kube: ApiServer) -> ApiServer:
    """CRDs, S3 secret, helm release (namespace sentiops-helm) and the overlays (sentiops)."""
    for crd in sorted(crds_dir().glob("serving.kserve.io_*.yaml")):
        kube.kubectl("apply", "--server-side", "-f", "-", input=crd_for_apiserver_1_20(crd))
    kube.kubectl("apply", "--server-side", "-f", "-", input=MONITORING_CRDS)
    # HTTPRoute: known to the server, so that `can-i` on httproutes asks about the right group
    kube.kubectl("apply", "--server-side", "-f", "-", input=httproute_crd_for_apiserver_1_20())
    kube.wait_established(
        "crd/inferenceservices.serving.kserve.io",
        "crd/podmonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
        "crd/httproutes.gateway.networking.k8s.io",
    )
    # The chart as `make deploy-helm` installs it: the Secrets first (the script, as `make
    # secrets` runs it), then the release naming the token Secret; no hooks (the bucket Job
    # hook would wait for a Job controller that is absent).
    kube.kubectl("create", "namespace", KFP_NS)
    create_secrets(kube, "sentiops-helm", kube.workdir / "config")
    kube.helm(
        "install",
        "sentiops",
        str(REPO / "helm" / "sentiops"),
        "--namespace=sentiops-helm",
        "--no-hooks",
        "--timeout=120s",
        *REQUIRED_SET,
    )
    # The same chart with the drift detector as a Service (drift.mode: service).
    kube.helm(
        "install",
        "sentiops-svc",
        str(REPO / "helm" / "sentiops"),
        "--namespace=sentiops-svc",
        "--create-namespace",
        "--no-hooks",
        "--timeout=120s",
        "--set=drift.mode=service",
        *REQUIRED_SET,
    )
    # Service mode with the write protection on: token Secret mounted, reads closed, rate
    # limit, a client allowed through the predictor's NetworkPolicy. (The Istio
    # AuthorizationPolicy is not installed: no Istio CRD in tests/cluster/crds;
    # test_manifests checks its shape.)
    kube.helm(
        "install",
        "sentiops-auth",
        str(REPO / "helm" / "sentiops"),
        "--namespace=sentiops-auth",
        "--create-namespace",
        "--no-hooks",
        "--timeout=120s",
        "--set=drift.mode=service,auth.existingSecret=sentiops-annotator-tokens",
        "--set=auth.readsNeedToken=true,inferenceService.rateLimit=20",
        "--set=networkPolicy.clients[0].matchLabels.app=rollout",
    )
    # Feedback off: no token Secret needed, none mounted.
    kube.helm(
        "install",
        "sentiops-nofeedback",
        str(REPO / "helm" / "sentiops"),
        "--namespace=sentiops-nofeedback",
        "--create-namespace",
        "--no-hooks",
        "--timeout=120s",
        "--set=inferenceService.feedback.enabled=false",
    )
    # Shadow rollout mode (KServe Standard mode): the pipeline's Role adds HTTPRoutes and
    # delete on `sentiment-shadow`; the shadow's pods get a NetworkPolicy of their own.
    kube.helm(
        "install",
        "sentiops-shadow",
        str(REPO / "helm" / "sentiops"),
        "--namespace=sentiops-shadow",
        "--create-namespace",
        "--no-hooks",
        "--timeout=120s",
        "--set=inferenceService.canary.mode=shadow,inferenceService.deploymentMode=Standard",
        *REQUIRED_SET,
    )
    # The overlays, as `make deploy` applies them: kind into its namespace "sentiops"; cloud
    # into "sentiops-cloud" through a wrapper kustomization (same objects, other namespace).
    overlays = REPO / "manifests" / "overlays"
    kube.kubectl("apply", "--server-side", "--field-manager=sentiops", "-k", str(overlays / "kind"))
    wrapper = kube.workdir / "cloud-wrapper"
    wrapper.mkdir()
    (wrapper / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "namespace: sentiops-cloud\n"
        f"resources:\n  - {os.path.relpath(overlays / 'cloud', wrapper)}\n"
    )
    kube.kubectl("apply", "--server-side", "--field-manager=sentiops", "-k", str(wrapper))
    kube.kubectl("create", "namespace", "other")
    return kube


def get(kube: ApiServer, *args: str) -> dict:
    return json.loads(kube.kubectl("get", "-o", "json", *args).stdout)


def test_helm_release_objects_stored(installed: ApiServer) -> None:
    isvc = get(installed, "-n", "sentiops-helm", "inferenceservice", "sentiment")
    pred = isvc["spec"]["predictor"]
    assert pred["canaryTrafficPercent"] == 10
    assert pred["logger"]["mode"] == "all"
    # the drift detector is a sidecar of the predictor pod, behind the logger on localhost
    assert pred["logger"]["url"] == "http://localhost:9081/"
    container, drift = pred["containers"]
    assert container["name"] == "kserve-container" and drift["name"] == "drift"
    assert {"name": "STORAGE_URI", "value": "s3://sentiops/models/sentiment/1/"} in container["env"]
    assert "ports" not in drift and drift["livenessProbe"]["httpGet"]["port"] == 9081
    status = installed.helm("status", "sentiops", "-n", "sentiops-helm", "-o", "json")
    assert json.loads(status.stdout)["info"]["status"] == "deployed"


def _secret_data(kube: ApiServer, ns: str, name: str) -> dict[str, str]:
    secret = get(kube, "-n", ns, "secret", name)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_the_secrets_script_creates_what_the_release_names(installed: ApiServer) -> None:
    """scripts/cluster/create-secrets.sh (`make secrets`) makes every Secret the installed
    release references (hooks included), with random values in files of mode 600 outside the
    repository: a distinct S3 user per identity, the predictor's with KServe's endpoint
    annotations; one annotator token; a 32-byte sample key; an Ed25519 key pair. The
    pipeline's two Secrets also go to the KFP namespace. A second run changes nothing, and
    never replaces a token, the sample key or the signing keys."""
    ns, config = "sentiops-helm", installed.workdir / "config"
    manifest = installed.helm("get", "manifest", "sentiops", "-n", ns).stdout
    hooks = installed.helm("get", "hooks", "sentiops", "-n", ns).stdout
    names = set()
    for doc in yaml.safe_load_all(manifest + "\n---\n" + hooks):
        names |= secret_names(doc) if doc else set()
    s3 = [
        "sentiops-s3-root",
        "sentiops-s3-predictor",
        "sentiops-s3-drift",
        "sentiops-s3-mlflow",
        "sentiops-s3",
    ]
    keys = ["sentiops-annotator-tokens", "sentiops-eval-sample", "sentiops-model-signing"]
    assert names == set(s3 + keys)
    existing = installed.kubectl("get", "secrets", "-n", ns, "-o", "name").stdout.split()
    assert {f"secret/{n}" for n in names} <= set(existing)
    data = {n: _secret_data(installed, ns, n) for n in s3 + keys}
    users = [data[n]["AWS_ACCESS_KEY_ID"] for n in s3]
    assert len(set(users)) == len(users)  # one MinIO user each, none the root user
    for n in s3:
        assert set(data[n]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, n
        assert re.fullmatch(r"[0-9a-f]{48}", data[n]["AWS_SECRET_ACCESS_KEY"]), n
    assert [u.rsplit("-", 1)[0] for u in users] == [
        "sentiops",
        "predictor",
        "drift",
        "mlflow",
        "pipeline",
    ]
    notes = get(installed, "-n", ns, "secret", "sentiops-s3-predictor")["metadata"]["annotations"]
    assert notes["serving.kserve.io/s3-endpoint"] == f"minio.{ns}.svc.cluster.local:9000"
    assert notes["serving.kserve.io/s3-usehttps"] == "0"
    ((team, token),) = data["sentiops-annotator-tokens"].items()
    assert team == "team-a" and re.fullmatch(r"[0-9a-f]{48}", token)
    assert re.fullmatch(r"[0-9a-f]{64}", data["sentiops-eval-sample"]["key"])
    signing = data["sentiops-model-signing"]
    assert set(signing) == {"signing.key", "verify.pub"}
    text = run([tool("openssl"), "pkey", "-noout", "-text"], input=signing["signing.key"]).stdout
    assert "ED25519 Private-Key" in text
    public = run([tool("openssl"), "pkey", "-pubout"], input=signing["signing.key"]).stdout
    assert public == signing["verify.pub"] and "BEGIN PUBLIC KEY" in public
    # kept outside the repository, readable by their owner only
    files = [p for p in config.rglob("*") if p.is_file()]
    assert {p.relative_to(config).as_posix() for p in files} == {
        "s3.env",
        "s3-predictor.env",
        "s3-drift.env",
        "s3-mlflow.env",
        "s3-pipeline.env",
        "annotator-tokens.env",
        "eval-sample.env",
        "model-signing/signing.key",
        "model-signing/verify.pub",
    }
    assert all(p.stat().st_mode & 0o077 == 0 for p in files)
    assert config.stat().st_mode & 0o077 == 0
    # the pipeline's Secrets where its runs execute (and nothing else there)
    there = installed.kubectl("get", "secrets", "-n", KFP_NS, "-o", "name").stdout.split()
    assert {"secret/sentiops-s3", "secret/sentiops-model-signing"} <= set(there)
    assert not {"secret/sentiops-s3-root", "secret/sentiops-eval-sample"} & set(there)
    assert _secret_data(installed, KFP_NS, "sentiops-s3") == data["sentiops-s3"]
    assert _secret_data(installed, KFP_NS, "sentiops-model-signing") == signing
    # a second run: nothing changes; a token rotated by hand stays
    installed.kubectl(
        "-n",
        ns,
        "patch",
        "secret",
        "sentiops-annotator-tokens",
        "--type=merge",
        "-p",
        json.dumps({"stringData": {"team-b": "b" * 48}}),
    )
    out = create_secrets(installed, ns, config)
    for n in keys:
        assert f"Secret {n} in {ns} exists: left as it is" in out
    again = {n: _secret_data(installed, ns, n) for n in s3 + keys}
    assert again == {**data, "sentiops-annotator-tokens": {team: token, "team-b": "b" * 48}}


def test_helm_release_in_service_mode_stored(installed: ApiServer) -> None:
    isvc = get(installed, "-n", "sentiops-svc", "inferenceservice", "sentiment")
    pred = isvc["spec"]["predictor"]
    assert pred["logger"]["url"] == "http://sentiops-drift.sentiops-svc.svc.cluster.local:9081/"
    assert [c["name"] for c in pred["containers"]] == ["kserve-container"]
    svc = get(installed, "-n", "sentiops-svc", "service", "sentiops-drift")
    assert svc["spec"]["ports"][0]["port"] == 9081
    deploy = get(installed, "-n", "sentiops-svc", "deployment", "sentiops-drift")
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    assert c["ports"][0]["containerPort"] == 9081 and c["readinessProbe"]["httpGet"]["path"]


def test_overlay_objects_stored(installed: ApiServer) -> None:
    names = installed.kubectl(
        "get",
        "-n",
        "sentiops",
        "-o",
        "name",
        "deploy,svc,pvc,sa,role,rolebinding,cm,job,inferenceservice,podmonitor,prometheusrule",
    ).stdout.split()
    for expected in (
        "deployment.apps/minio",
        "deployment.apps/mlflow",
        "inferenceservice.serving.kserve.io/sentiment",
        "podmonitor.monitoring.coreos.com/sentiops-drift",
        "job.batch/minio-create-buckets",
        "podmonitor.monitoring.coreos.com/sentiops-predictor",
        "prometheusrule.monitoring.coreos.com/sentiops",
        "configmap/sentiops-grafana-dashboard",
    ):
        assert expected in names
    kind = get(installed, "-n", "sentiops", "inferenceservice", "sentiment")["spec"]["predictor"]
    assert kind["maxReplicas"] == 1
    assert kind["containers"][0]["image"] == "dev.local/sentiops/serving:dev"
    cloud = get(installed, "-n", "sentiops-cloud", "inferenceservice", "sentiment")
    assert cloud["spec"]["predictor"]["minReplicas"] == 2
    assert cloud["spec"]["predictor"]["containers"][0]["image"].startswith("registry.example.com/")


def test_server_side_dry_run_rejects_a_broken_isvc(installed: ApiServer) -> None:
    """The stored CRD schema is enforced: the acceptance above means something."""
    bad = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "broken", "namespace": "sentiops"},
        "spec": {"predictor": {"logger": {"mode": "sometimes"}, "containers": []}},
    }
    proc = installed.kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False
    )
    assert proc.returncode != 0
    assert "mode" in proc.stderr


ISVCS, ROUTES = "inferenceservices.serving.kserve.io", "httproutes.gateway.networking.k8s.io"
ALLOWED = [
    ("get", "inferenceservices.serving.kserve.io"),
    ("list", "inferenceservices.serving.kserve.io"),
    ("watch", "inferenceservices.serving.kserve.io"),
    ("create", "inferenceservices.serving.kserve.io"),
    ("patch", "inferenceservices.serving.kserve.io"),
    ("update", "inferenceservices.serving.kserve.io"),
    ("get", "configmaps/sentiops-rollout"),
]
DENIED_IN_OWN_NS = [
    ("delete", "inferenceservices.serving.kserve.io"),
    ("deletecollection", "inferenceservices.serving.kserve.io"),
    ("get", "secrets"),
    ("list", "secrets"),
    ("delete", "secrets"),
    ("create", "pods"),
    ("create", "pods/exec"),
    ("get", "configmaps/other-config"),
    ("list", "configmaps"),
    ("update", "configmaps/sentiops-rollout"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("patch", "deployments.apps"),
    ("create", "servingruntimes.serving.kserve.io"),
    ("impersonate", "serviceaccounts"),
    # never the serving InferenceService's delete, in either mode
    ("delete", f"{ISVCS}/sentiment"),
    ("delete", f"{ROUTES}/sentiment"),
    ("delete", ROUTES),
    ("list", ROUTES),
    ("update", ROUTES),
    ("deletecollection", ROUTES),
    ("create", "gateways.gateway.networking.k8s.io"),
]
# The shadow rollout's rules (inferenceService.canary.mode: shadow, docs/pipeline.md): the
# mirror HTTPRoute, and delete on the two objects it creates by name. A canary-mode install
# (the default, and the overlays) has none of them.
SHADOW_ALLOWED = [
    ("get", ROUTES),
    ("create", ROUTES),
    ("patch", ROUTES),
    ("delete", f"{ROUTES}/sentiment-shadow"),
    ("delete", f"{ISVCS}/sentiment-shadow"),
]
DENIED_CLUSTER = [
    ("list", "namespaces"),
    ("create", "namespaces"),
    ("list", "nodes"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "clusterservingruntimes.serving.kserve.io"),
]


@pytest.mark.parametrize(
    ("user_tpl", "own_ns", "other_ns"),
    [
        (PIPELINE_SA, "sentiops", "other"),  # kustomize overlay
        (PIPELINE_SA, "sentiops-helm", "sentiops"),  # helm release
        (PIPELINE_SA, "sentiops-cloud", "sentiops"),  # cloud overlay
        (KFP_RUNNER, "sentiops", "kubeflow"),  # KFP standalone runner (kind overlay)
        (PIPELINE_SA, "sentiops-shadow", "sentiops-helm"),  # helm release in shadow mode
    ],
    ids=["kind-overlay-sa", "helm-sa", "cloud-overlay-sa", "kfp-runner", "helm-shadow-sa"],
)
def test_rbac_least_privilege(
    installed: ApiServer, user_tpl: str, own_ns: str, other_ns: str
) -> None:
    user = user_tpl.format(ns=own_ns)
    shadow = own_ns == "sentiops-shadow"
    allowed = ALLOWED + SHADOW_ALLOWED if shadow else ALLOWED
    denied = DENIED_IN_OWN_NS if shadow else DENIED_IN_OWN_NS + SHADOW_ALLOWED
    wrong = []
    for verb, res in allowed:
        if not installed.can_i(user, verb, res, own_ns):
            wrong.append(f"denied but needed: {verb} {res} in {own_ns}")
        if installed.can_i(user, verb, res, other_ns):
            wrong.append(f"allowed in another namespace: {verb} {res} in {other_ns}")
        if installed.can_i(user, verb, res, None):
            wrong.append(f"allowed cluster-wide: {verb} {res}")
    for verb, res in denied:
        if installed.can_i(user, verb, res, own_ns):
            wrong.append(f"allowed but not needed: {verb} {res} in {own_ns}")
    for verb, res in DENIED_CLUSTER:
        if installed.can_i(user, verb, res, None):
            wrong.append(f"cluster-scoped allowed: {verb} {res}")
    assert not wrong, "\n".join(wrong)


def test_predictor_and_workloads_have_no_rbac(installed: ApiServer) -> None:
    for sa in ("sentiops-predictor", "sentiops-workload"):
        user = f"system:serviceaccount:sentiops:{sa}"
        assert not installed.can_i(user, "get", "inferenceservices.serving.kserve.io", "sentiops")
        assert not installed.can_i(user, "get", "secrets", "sentiops")


def test_network_policies_stored(installed: ApiServer) -> None:
    """The predictor's policy in every install; the drift Deployment's in service mode."""
    for ns in ("sentiops", "sentiops-cloud", "sentiops-helm", "sentiops-svc", "sentiops-auth"):
        np = get(installed, "-n", ns, "networkpolicy", "sentiops-predictor")["spec"]
        assert np["podSelector"]["matchLabels"] == {
            "serving.kserve.io/inferenceservice": "sentiment"
        }, ns
        assert np["policyTypes"] == ["Ingress"], ns
        requests, metrics = np["ingress"]
        assert [p["port"] for p in requests["ports"]] == [8012, 8013, 9090], ns
        assert {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        } in metrics["from"], ns
    clients = get(installed, "-n", "sentiops-auth", "networkpolicy", "sentiops-predictor")
    assert {"podSelector": {"matchLabels": {"app": "rollout"}}} in clients["spec"]["ingress"][0][
        "from"
    ]
    for ns in ("sentiops-svc", "sentiops-auth"):
        drift = get(installed, "-n", ns, "networkpolicy", "sentiops-drift")["spec"]
        (rule,) = drift["ingress"]
        assert [p["port"] for p in rule["ports"]] == [9081]
        assert rule["from"][0] == {
            "podSelector": {"matchLabels": {"serving.kserve.io/inferenceservice": "sentiment"}}
        }
    names = installed.kubectl("get", "networkpolicy", "-n", "sentiops-helm", "-o", "name").stdout
    assert names.split() == [
        f"networkpolicy.networking.k8s.io/{n}" for n in ("minio", "mlflow", "sentiops-predictor")
    ]
    pipeline_pods = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}},
        "podSelector": {"matchLabels": {"pipelines.kubeflow.org/v2_component": "true"}},
    }
    for ns, release in (
        ("sentiops", "sentiops"),
        ("sentiops-helm", "sentiops"),
        ("sentiops-svc", "sentiops-svc"),
    ):
        mine = {"app.kubernetes.io/instance": release}
        mlflow = get(installed, "-n", ns, "networkpolicy", "mlflow")["spec"]
        assert mlflow["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "mlflow", **mine}
        (rule,) = mlflow["ingress"]
        assert rule["from"] == [pipeline_pods] and [p["port"] for p in rule["ports"]] == [5000]
        minio = get(installed, "-n", ns, "networkpolicy", "minio")["spec"]
        assert minio["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "minio", **mine}
        (rule,) = minio["ingress"]
        assert [p["port"] for p in rule["ports"]] == [9000], ns
        assert {
            "podSelector": {"matchLabels": {"serving.kserve.io/inferenceservice": "sentiment"}}
        } in rule["from"]
        assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow", **mine}}} in (
            rule["from"]
        )
        assert pipeline_pods in rule["from"], ns
        drift = {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "sentiops-drift", **mine}}
        }
        assert (drift in rule["from"]) is (ns == "sentiops-svc"), ns


def test_helm_release_in_shadow_mode_stored(installed: ApiServer) -> None:
    """Shadow mode: the ConfigMap says so, the predictor's PodMonitor selects the shadow's
    pods too (the drift PodMonitor does not), the shadow's pods have a NetworkPolicy of their
    own (requests straight to the model server), the predictor's is as in canary mode."""
    ns = "sentiops-shadow"
    data = get(installed, "-n", ns, "configmap", "sentiops-rollout")["data"]
    assert data["rolloutMode"] == "shadow"
    assert (
        "rolloutMode"
        not in get(installed, "-n", "sentiops-helm", "configmap", "sentiops-rollout")["data"]
    )
    pm = get(installed, "-n", ns, "podmonitor", "sentiops-predictor")["spec"]["selector"]
    assert pm == {
        "matchExpressions": [
            {
                "key": "serving.kserve.io/inferenceservice",
                "operator": "In",
                "values": ["sentiment", "sentiment-shadow"],
            }
        ]
    }
    drift = get(installed, "-n", ns, "podmonitor", "sentiops-drift")["spec"]["selector"]
    assert drift == {"matchLabels": {"serving.kserve.io/inferenceservice": "sentiment"}}
    predictor = get(installed, "-n", ns, "networkpolicy", "sentiops-predictor")["spec"]
    shadow = get(installed, "-n", ns, "networkpolicy", "sentiops-predictor-shadow")["spec"]
    assert shadow["podSelector"] == {
        "matchLabels": {"serving.kserve.io/inferenceservice": "sentiment-shadow"}
    }
    assert [[p["port"] for p in rule["ports"]] for rule in predictor["ingress"]] == [
        [9081],
        [8080, 9081],
    ]
    assert [[p["port"] for p in rule["ports"]] for rule in shadow["ingress"]] == [[8080], [8080]]
    assert [r["from"] for r in shadow["ingress"]] == [r["from"] for r in predictor["ingress"]]
    isvc = get(installed, "-n", ns, "inferenceservice", "sentiment")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_token_secret_mounted_into_the_stored_predictor(installed: ApiServer) -> None:
    pred = get(installed, "-n", "sentiops-auth", "inferenceservice", "sentiment")["spec"][
        "predictor"
    ]
    (container,) = pred["containers"]
    assert "--auth_token_file=/var/run/sentiops/tokens" in container["args"]
    assert "--auth_reads=true" in container["args"] and "--rate_limit=20" in container["args"]
    assert {
        "name": "auth-tokens",
        "mountPath": "/var/run/sentiops/tokens",
        "readOnly": True,
    } in container["volumeMounts"]
    assert {
        "name": "auth-tokens",
        "secret": {"secretName": "sentiops-annotator-tokens", "defaultMode": 0o440},
    } in pred["volumes"]
    # the chart created no Secret (the user does); with feedback off none is mounted
    secrets = installed.kubectl("get", "secrets", "-n", "sentiops-auth", "-o", "name").stdout
    assert "secret/sentiops-annotator-tokens" not in secrets.split()
    off = get(installed, "-n", "sentiops-nofeedback", "inferenceservice", "sentiment")
    assert "auth-tokens" not in {v["name"] for v in off["spec"]["predictor"]["volumes"]}
    assert not [
        a
        for a in off["spec"]["predictor"]["containers"][0]["args"]
        if a.startswith(("--feedback", "--auth"))
    ]
    # NOTES.txt: the token Secret's name with feedback on, that feedback is off without
    notes = {
        release: installed.helm("get", "notes", release, "-n", ns).stdout
        for release, ns in (
            ("sentiops-nofeedback", "sentiops-nofeedback"),
            ("sentiops-auth", "sentiops-auth"),
        )
    }
    assert "Feedback is off" in notes["sentiops-nofeedback"]
    assert "WARNING" not in notes["sentiops-auth"]
    assert "needs a token from Secret sentiops-annotator-tokens" in notes["sentiops-auth"]
    assert "scripts/cluster/create-secrets.sh" in notes["sentiops-auth"]


def test_the_defaults_refuse_to_install_an_open_feedback_api(installed: ApiServer) -> None:
    """`helm install` with the chart's defaults alone fails before anything is created, saying
    what to set: :feedback is on by default and needs a token Secret."""
    proc = installed.helm(
        "install",
        "sentiops-open",
        str(REPO / "helm" / "sentiops"),
        "--namespace=sentiops-open",
        "--create-namespace",
        "--no-hooks",
        check=False,
    )
    assert proc.returncode != 0
    assert "inferenceService.feedback.enabled=true needs auth.existingSecret" in proc.stderr
    assert "set auth.existingSecret=sentiops-annotator-tokens" in proc.stderr
    releases = installed.helm("list", "--all-namespaces", "-q").stdout.split()
    assert "sentiops-open" not in releases


def test_pods_without_api_access_mount_no_token(installed: ApiServer) -> None:
    for name in ("minio", "mlflow"):
        spec = get(installed, "-n", "sentiops", "deployment", name)["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False, name
    job = get(installed, "-n", "sentiops", "job", "minio-create-buckets")  # (helm: a hook)
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    for ns in ("sentiops", "sentiops-helm"):
        isvc = get(installed, "-n", ns, "inferenceservice", "sentiment")
        assert isvc["spec"]["predictor"]["automountServiceAccountToken"] is False, ns
    drift = get(installed, "-n", "sentiops-svc", "deployment", "sentiops-drift")
    assert drift["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    for sa, mounted in (
        ("sentiops-predictor", False),
        ("sentiops-workload", False),
        ("sentiops-pipeline", True),
    ):
        account = get(installed, "-n", "sentiops", "serviceaccount", sa)
        assert account["automountServiceAccountToken"] is mounted, sa


def test_mlflow_on_postgresql_installed(installed: ApiServer, tmp_path: Path) -> None:
    """A release on sqlite switched to mlflow.backend=postgresql (`helm upgrade`, as
    docs/mlflow-postgresql.md moves a store) against the API server: the password Secret from
    scripts/cluster/create-mlflow-db-secret.sh (random, outside the repo, never replaced), the
    database's StatefulSet, headless Service and NetworkPolicy, MLflow's URL built from the
    Secret, the sqlite PVC kept; and the chart on an existing database's URL Secret."""
    ns, script = "sentiops-pg", str(REPO / "scripts" / "cluster" / "create-mlflow-db-secret.sh")
    chart = str(REPO / "helm" / "sentiops")
    installed.helm(
        "install",
        "sentiops-pg",
        chart,
        f"--namespace={ns}",
        "--create-namespace",
        "--no-hooks",
        "--timeout=120s",
        *REQUIRED_SET,
    )
    env_file = tmp_path / "mlflow-db.env"
    env = {
        **installed.env,
        "NAMESPACE": ns,
        "KUBECTL": tool("kubectl"),
        "MLFLOW_DB_ENV_FILE": str(env_file),
    }
    run(["bash", script], env=env)
    secret = get(installed, "-n", ns, "secret", "mlflow-postgresql")
    assert re.fullmatch(r"[0-9a-f]{48}", base64.b64decode(secret["data"]["password"]).decode())
    assert env_file.stat().st_mode & 0o077 == 0
    assert "left as it is" in run(["bash", script], env=env).stdout  # the database keeps it
    assert get(installed, "-n", ns, "secret", "mlflow-postgresql")["data"] == secret["data"]

    installed.helm(
        "upgrade",
        "sentiops-pg",
        chart,
        f"--namespace={ns}",
        "--no-hooks",
        "--timeout=120s",
        "--set=mlflow.backend=postgresql",
        *REQUIRED_SET,
    )
    sts = get(installed, "-n", ns, "statefulset", "mlflow-postgresql")["spec"]
    assert sts["serviceName"] == "mlflow-postgresql"
    assert sts["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"
    pod = sts["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    (db,) = pod["containers"]
    assert db["securityContext"]["readOnlyRootFilesystem"] is True
    assert {
        "name": "POSTGRES_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "mlflow-postgresql", "key": "password"}},
    } in db["env"]
    svc = get(installed, "-n", ns, "service", "mlflow-postgresql")["spec"]
    assert svc["clusterIP"] == "None" and svc["ports"][0]["port"] == 5432
    (rule,) = get(installed, "-n", ns, "networkpolicy", "mlflow-postgresql")["spec"]["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "mlflow"
    (mlflow,) = get(installed, "-n", ns, "deployment", "mlflow")["spec"]["template"]["spec"][
        "containers"
    ]
    menv = {e["name"]: e for e in mlflow["env"]}
    assert menv["MLFLOW_BACKEND_STORE_URI"]["value"] == (
        f"postgresql://mlflow:$(MLFLOW_DB_PASSWORD)@mlflow-postgresql.{ns}.svc.cluster.local:5432"
        "/mlflow"
    )
    assert not [a for a in mlflow["args"] if a.startswith("--backend-store-uri")]
    assert not [e for e in mlflow.get("volumeMounts", []) if e["name"] == "data"]  # no file
    pvcs = installed.kubectl("get", "pvc", "-n", ns, "-o", "name").stdout.split()
    assert "persistentvolumeclaim/mlflow-data" in pvcs  # kept: the sqlite store to move over
    notes = installed.helm("get", "notes", "sentiops-pg", "-n", ns).stdout
    assert "MLflow keeps its metadata in PostgreSQL" in notes

    # an existing database: its URL in a Secret of the user's, no database of the chart's
    ext = "sentiops-pgext"
    installed.kubectl("create", "namespace", ext)
    url = "postgresql://mlflow:pw@db.example.com:5432/mlflow"
    installed.kubectl(
        "-n", ext, "create", "secret", "generic", "mlflow-db", f"--from-literal=url={url}"
    )
    installed.helm(
        "install",
        "sentiops-pgext",
        chart,
        f"--namespace={ext}",
        "--no-hooks",
        "--timeout=120s",
        "--set=mlflow.backend=postgresql",
        "--set=mlflow.postgresql.existingSecret=mlflow-db",
        *REQUIRED_SET,
    )
    assert installed.kubectl("get", "statefulset", "-n", ext, "-o", "name").stdout.split() == []
    (mlflow,) = get(installed, "-n", ext, "deployment", "mlflow")["spec"]["template"]["spec"][
        "containers"
    ]
    assert {
        "name": "MLFLOW_BACKEND_STORE_URI",
        "valueFrom": {"secretKeyRef": {"name": "mlflow-db", "key": "url"}},
    } in mlflow["env"]
