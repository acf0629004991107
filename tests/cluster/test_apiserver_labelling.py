"""Label Studio and the labelling receiver in a real kube-apiserver (+ etcd) on loopback: the
Secrets `make secrets LABELLING=1` makes, the chart installed in both modes (its own Label
Studio; an existing one), every Secret and key the releases name present. As in
test_apiserver.py, nothing reconciles: this proves schema, admission and that the names match,
not that the pods run."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from .harness import REPO, REQUIRED_SET, ApiServer, crd_for_apiserver_1_20, crds_dir, run, tool

pytestmark = pytest.mark.integration

CHART = REPO / "helm" / "sentiops"
NS, EXT_NS = "sentiops-labelling", "sentiops-labelling-ext"
IN_CHART = "--set=labelling.enabled=true,labelStudio.enabled=true"
EXISTING = (
    "--set=labelling.enabled=true,labelStudio.url=https://label.example.com,"
    "labelStudio.existingTokenSecret=labelstudio-token"
)
NO_MONITORING = (
    "--set=monitoring.podMonitor.enabled=false",
    "--set=monitoring.prometheusRule.enabled=false",
)
LABELLING_SECRETS = {
    "sentiops-s3-labelling": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
    "sentiops-labelling-webhook": {"secret"},
    "sentiops-labelstudio": {"password", "token"},
    "sentiops-labelstudio-postgresql": {"password"},
}


def make_secrets(kube: ApiServer, namespace: str, config: Path, labelling: bool = True) -> str:
    """scripts/cluster/create-secrets.sh (`make secrets LABELLING=1`) against the test API
    server (no KFP namespace); its output."""
    env = {
        **kube.env,
        "NAMESPACE": namespace,
        "KFP_NAMESPACE": "",
        "SENTIOPS_CONFIG_DIR": str(config),
        "KUBECTL": tool("kubectl"),
        "OPENSSL": tool("openssl"),
        "LABELLING": "1" if labelling else "0",
    }
    env.pop("S3_ENV_FILE", None)
    return run(["bash", str(REPO / "scripts" / "cluster" / "create-secrets.sh")], env=env).stdout


def get(kube: ApiServer, *args: str) -> dict:
    return json.loads(kube.kubectl("get", "-o", "json", *args).stdout)


def secret_data(kube: ApiServer, ns: str, name: str) -> dict[str, str]:
    secret = get(kube, "-n", ns, "secret", name)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def referenced_keys(node: object) -> dict[str, set[str]]:
    """Secret name -> the keys a rendered object reads (secretKeyRef; a secret volume's
    items), or {} for a whole Secret (envFrom, a volume without items)."""
    found: dict[str, set[str]] = {}
    if isinstance(node, dict):
        ref = node.get("secretKeyRef")
        if isinstance(ref, dict):
            found.setdefault(ref["name"], set()).add(ref["key"])
        secret = node.get("secret")
        if isinstance(secret, dict) and "secretName" in secret:
            keys = {i["key"] for i in secret.get("items", [])}
            found.setdefault(secret["secretName"], set()).update(keys)
        for key, value in node.items():
            if key not in ("secretKeyRef", "secret"):
                for name, keys in referenced_keys(value).items():
                    found.setdefault(name, set()).update(keys)
    elif isinstance(node, list):
        for value in node:
            for name, keys in referenced_keys(value).items():
                found.setdefault(name, set()).update(keys)
    return found


def release_docs(kube: ApiServer, release: str, ns: str) -> list[dict]:
    manifest = kube.helm("get", "manifest", release, "-n", ns).stdout
    hooks = kube.helm("get", "hooks", release, "-n", ns).stdout
    return [d for d in yaml.safe_load_all(manifest + "\n---\n" + hooks) if d]


@pytest.fixture(scope="module")
def installed(kube: ApiServer) -> ApiServer:
    """The KServe CRDs; the Secrets and the chart with its own Label Studio in NS; the Secrets,
    an existing instance's token Secret and the chart pointing at that instance in EXT_NS."""
    for crd in sorted(crds_dir().glob("serving.kserve.io_*.yaml")):
        kube.kubectl("apply", "--server-side", "-f", "-", input=crd_for_apiserver_1_20(crd))
    kube.wait_established("crd/inferenceservices.serving.kserve.io")
    make_secrets(kube, NS, kube.workdir / "config-labelling")
    kube.helm(
        "install",
        "sentiops",
        str(CHART),
        f"--namespace={NS}",
        "--no-hooks",
        "--timeout=120s",
        *REQUIRED_SET,
        *NO_MONITORING,
        IN_CHART,
    )
    make_secrets(kube, EXT_NS, kube.workdir / "config-labelling-ext")
    kube.kubectl(
        "-n",
        EXT_NS,
        "create",
        "secret",
        "generic",
        "labelstudio-token",
        "--from-literal=token=" + "e" * 40,
    )
    kube.helm(
        "install",
        "sentiops",
        str(CHART),
        f"--namespace={EXT_NS}",
        "--no-hooks",
        "--timeout=120s",
        *REQUIRED_SET,
        *NO_MONITORING,
        EXISTING,
    )
    return kube


def test_the_charts_label_studio_is_stored(installed: ApiServer) -> None:
    names = {
        (d["kind"], d["metadata"]["name"])
        for d in get(installed, "-n", NS, "deploy,sts,svc,pvc,networkpolicy")["items"]
    }
    assert {
        ("Deployment", "label-studio"),
        ("Deployment", "sentiops-labelling"),
        ("StatefulSet", "label-studio-postgresql"),
        ("Service", "label-studio"),
        ("Service", "label-studio-postgresql"),
        ("Service", "sentiops-labelling"),
        ("PersistentVolumeClaim", "label-studio-data"),
        ("NetworkPolicy", "label-studio"),
        ("NetworkPolicy", "label-studio-postgresql"),
        ("NetworkPolicy", "sentiops-labelling"),
    } <= names
    ls = get(installed, "-n", NS, "deployment", "label-studio")["spec"]["template"]["spec"]
    assert ls["automountServiceAccountToken"] is False
    (c,) = ls["containers"]
    assert c["image"] == "heartexlabs/label-studio:1.23.2"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # the server keeps the egress rules (DNS on UDP and TCP among them)
    np = get(installed, "-n", NS, "networkpolicy", "label-studio")["spec"]
    assert np["policyTypes"] == ["Ingress", "Egress"]
    ports = [(p["port"], p["protocol"]) for rule in np["egress"] for p in rule["ports"]]
    assert ports == [(5432, "TCP"), (9082, "TCP"), (53, "UDP"), (53, "TCP")]
    status = installed.helm("status", "sentiops", "-n", NS, "-o", "json")
    assert json.loads(status.stdout)["info"]["status"] == "deployed"


def test_an_existing_label_studio_is_stored(installed: ApiServer) -> None:
    deployments = {d["metadata"]["name"] for d in get(installed, "-n", EXT_NS, "deploy")["items"]}
    assert "sentiops-labelling" in deployments and "label-studio" not in deployments
    assert not get(installed, "-n", EXT_NS, "statefulsets")["items"]
    spec = get(installed, "-n", EXT_NS, "deployment", "sentiops-labelling")["spec"]
    (c,) = spec["template"]["spec"]["containers"]
    assert "--studio-url=https://label.example.com" in c["args"]


@pytest.mark.parametrize("ns", [NS, EXT_NS])
def test_every_secret_and_key_the_release_names_exists(installed: ApiServer, ns: str) -> None:
    """What the release reads (hooks included: the bucket Job creates the labelling user) is
    exactly what the script and the operator made: no pod would wait for a missing key."""
    wanted = referenced_keys(release_docs(installed, "sentiops", ns))
    assert {n for n in wanted if "label" in n} == (
        set(LABELLING_SECRETS)
        if ns == NS
        else {"sentiops-s3-labelling", "sentiops-labelling-webhook", "labelstudio-token"}
    )
    for name, keys in wanted.items():
        have = set(secret_data(installed, ns, name))
        assert keys <= have, (name, keys - have)
    assert "labelstudio" in wanted["sentiops-annotator-tokens"]


def test_the_script_makes_the_labelling_secrets_once(installed: ApiServer) -> None:
    """Random values of the right shape (the admin token 40 characters, Label Studio's token
    length), files of mode 600 outside the repository, the receiver's feedback token added to
    the annotator token Secret beside the team's; a second run replaces nothing."""
    config = installed.workdir / "config-labelling"
    data = {n: secret_data(installed, NS, n) for n in LABELLING_SECRETS}
    for name, keys in LABELLING_SECRETS.items():
        assert set(data[name]) == keys, name
    assert re.fullmatch(r"[0-9a-f]{64}", data["sentiops-labelling-webhook"]["secret"])
    assert re.fullmatch(r"[0-9a-f]{40}", data["sentiops-labelstudio"]["token"])
    assert re.fullmatch(r"[0-9a-f]{48}", data["sentiops-labelstudio"]["password"])
    assert re.fullmatch(r"[0-9a-f]{48}", data["sentiops-labelstudio-postgresql"]["password"])
    assert data["sentiops-s3-labelling"]["AWS_ACCESS_KEY_ID"].startswith("labelling-")
    tokens = secret_data(installed, NS, "sentiops-annotator-tokens")
    assert set(tokens) == {"team-a", "labelstudio"}
    assert re.fullmatch(r"[0-9a-f]{48}", tokens["labelstudio"])
    assert tokens["labelstudio"] != tokens["team-a"]
    files = {p.relative_to(config).as_posix() for p in config.rglob("*") if p.is_file()}
    assert {
        "s3-labelling.env",
        "labelling-webhook.env",
        "labelstudio.env",
        "labelstudio-postgresql.env",
        "labelstudio-token.env",
    } <= files
    assert not any(f.endswith(".patch.json") for f in files)  # the patch file is gone
    assert all(p.stat().st_mode & 0o077 == 0 for p in config.rglob("*") if p.is_file())
    out = make_secrets(installed, NS, config)
    for name in ("sentiops-labelling-webhook", "sentiops-labelstudio"):
        assert f"Secret {name} in {NS} exists: left as it is" in out
    assert "key labelstudio of Secret sentiops-annotator-tokens" in out
    assert {n: secret_data(installed, NS, n) for n in LABELLING_SECRETS} == data
    assert secret_data(installed, NS, "sentiops-annotator-tokens") == tokens


def test_without_labelling_the_script_makes_none_of_it(installed: ApiServer) -> None:
    ns = "sentiops-labelling-none"
    make_secrets(installed, ns, installed.workdir / "config-none", labelling=False)
    names = {d["metadata"]["name"] for d in get(installed, "-n", ns, "secrets")["items"]}
    assert not {n for n in names if "label" in n}
    assert set(secret_data(installed, ns, "sentiops-annotator-tokens")) == {"team-a"}


def test_the_receiver_without_label_studio_is_refused(installed: ApiServer) -> None:
    proc = installed.helm(
        "install",
        "half",
        str(CHART),
        "--namespace=sentiops-labelling-half",
        "--create-namespace",
        "--no-hooks",
        *REQUIRED_SET,
        "--set=labelling.enabled=true",
        check=False,
    )
    assert proc.returncode != 0
    assert "labelling.enabled=true needs a Label Studio" in proc.stderr
    assert not installed.helm("list", "-A", "-q").stdout.count("half")
