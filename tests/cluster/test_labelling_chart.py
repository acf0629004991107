"""The chart's Label Studio and labelling receiver (docs/labelling.md, "On a cluster"): both
render only when asked, in either mode (the chart's Label Studio or an existing one), refuse to
render half-configured, are locked down like every workload, reach only what they need
(NetworkPolicies that select the right pods), the receiver with an S3 identity of its own and
the command line the real CLI parses. No server is needed here (test_apiserver_labelling.py
stores the objects in a real kube-apiserver)."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest

from .conftest import CHART, by_kind, helm_fails, helm_template, one
from .harness import REPO, REQUIRED_SET, run, secret_names, tool
from .test_manifests import (
    CRD_GROUPS,
    K8S_VERSIONS,
    PROMETHEUS,
    S3_SECRETS,
    SECRET_ENV,
    _walk_env,
    key_files,
    lockdown_problems,
    pods_selected,
    s3_policies,
    s3_secrets_by_container,
)

IN_CHART = ("labelling.enabled=true", "labelStudio.enabled=true")
EXISTING = (
    "labelling.enabled=true",
    "labelStudio.url=https://label.example.com",
    "labelStudio.existingTokenSecret=ls-token",
)
LABELLING_OBJECTS = {
    ("Deployment", "sentiops-labelling"),
    ("Service", "sentiops-labelling"),
    ("NetworkPolicy", "sentiops-labelling"),
}
LABEL_STUDIO_OBJECTS = {
    ("Deployment", "label-studio"),
    ("Service", "label-studio"),
    ("PersistentVolumeClaim", "label-studio-data"),
    ("NetworkPolicy", "label-studio"),
}
POSTGRESQL_OBJECTS = {
    ("StatefulSet", "label-studio-postgresql"),
    ("Service", "label-studio-postgresql"),
    ("NetworkPolicy", "label-studio-postgresql"),
}
#: Label Studio 1.23.2's default blocked networks for outgoing requests
#: (label_studio/core/utils/io.py, validate_ip), in its order.
LABEL_STUDIO_BANNED = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "233.252.0.0/24",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "::ffff:0:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:0000::/32",
    "2001:20::/28",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
]


def ids(docs: list[dict]) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"]) for d in docs}


def container(docs: list[dict], kind: str, name: str) -> dict:
    (c,) = one(docs, kind, name)["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c: dict) -> dict[str, object]:
    """name -> its value, or ("secret", name, key) for a secretKeyRef."""
    out: dict[str, object] = {}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        out[e["name"]] = ("secret", ref["name"], ref["key"]) if ref else e.get("value")
    return out


def args_of(c: dict) -> dict[str, str]:
    """`--name=value` arguments -> {name: value} (flags: "")."""
    out = {}
    for a in c["args"]:
        name, _, value = a.removeprefix("--").partition("=")
        out[name] = value
    return out


# ---------------------------------------------------------------- what renders when


def test_off_by_default(helm_docs, overlay_docs) -> None:
    """Default values render neither Label Studio nor the receiver, and nothing names their
    Secrets; the labelling S3 policy is rendered (docs and an external S3 use it) but the
    bucket Job creates no MinIO user for it."""
    for render, docs in {"helm": helm_docs, **overlay_docs}.items():
        assert not ids(docs) & (LABELLING_OBJECTS | LABEL_STUDIO_OBJECTS | POSTGRESQL_OBJECTS)
        names = secret_names(docs)
        assert not {n for n in names if "label" in n}, render
        script = one(docs, "Job", "minio-create-buckets")["spec"]["template"]["spec"]
        assert "identity labelling" not in script["containers"][0]["args"][0], render
        assert "labelling" in s3_policies(docs), render


def test_the_charts_label_studio_and_the_receiver() -> None:
    docs = helm_template(*IN_CHART)
    assert ids(docs) >= LABELLING_OBJECTS | LABEL_STUDIO_OBJECTS | POSTGRESQL_OBJECTS
    dep = one(docs, "Deployment", "label-studio")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    ls = container(docs, "Deployment", "label-studio")
    # the upstream image, pinned; started directly (no gosu entrypoint in a non-root pod)
    assert ls["image"] == "heartexlabs/label-studio:1.23.2"
    assert ls["command"] == ["label-studio"]
    args = args_of(ls)
    assert args["data-dir"] == "/label-studio/data" and args["port"] == "8080"
    assert "enable-legacy-api-token" in args and "no-browser" in args
    env = env_of(ls)
    # PostgreSQL: the chart's, its password from the Secret
    assert env["DJANGO_DB"] == "default"
    assert env["POSTGRE_HOST"] == "label-studio-postgresql.prod.svc.cluster.local"
    assert (env["POSTGRE_PORT"], env["POSTGRE_NAME"], env["POSTGRE_USER"]) == (
        "5432",
        "labelstudio",
        "labelstudio",
    )
    assert env["POSTGRE_PASSWORD"] == ("secret", "sentiops-labelstudio-postgresql", "password")
    # the admin and its API token from a Secret; nothing phones home; no open signup
    assert env["LABEL_STUDIO_USERNAME"] == "admin@sentiops.local"
    assert env["LABEL_STUDIO_PASSWORD"] == ("secret", "sentiops-labelstudio", "password")
    assert env["LABEL_STUDIO_USER_TOKEN"] == ("secret", "sentiops-labelstudio", "token")
    assert env["LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK"] == "true"
    assert env["LATEST_VERSION_CHECK"] == env["COLLECT_ANALYTICS"] == "false"
    assert env["SENTRY_DSN"] == env["FRONTEND_SENTRY_DSN"] == ""
    assert env["HOME"] == "/tmp"
    mounts = {m["mountPath"]: m["name"] for m in ls["volumeMounts"]}
    assert mounts == {"/label-studio/data": "data", "/tmp": "tmp"}
    spec = dep["spec"]["template"]["spec"]
    (data,) = [v for v in spec["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"]["claimName"] == "label-studio-data"
    pvc = one(docs, "PersistentVolumeClaim", "label-studio-data")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert ls[probe]["httpGet"] == {"path": "/health", "port": "http"}
    pg = container(docs, "StatefulSet", "label-studio-postgresql")
    assert pg["image"] == "docker.io/library/postgres:15.14-bookworm"
    pg_env = env_of(pg)
    assert pg_env["POSTGRES_PASSWORD"] == ("secret", "sentiops-labelstudio-postgresql", "password")
    assert (pg_env["POSTGRES_DB"], pg_env["POSTGRES_USER"]) == ("labelstudio", "labelstudio")
    svc = one(docs, "Service", "label-studio")
    assert svc["spec"]["ports"][0]["port"] == 8080
    assert one(docs, "Service", "sentiops-labelling")["spec"]["ports"][0]["port"] == 9082


def test_webhooks_to_the_receiver_are_allowed_and_nothing_else() -> None:
    """Label Studio refuses webhooks to reserved networks (the Service network among them):
    with the receiver on, the chart keeps SSRF protection on and bans Label Studio's own
    default list minus labelStudio.webhookAllowedSubnets only; without it, nothing changes."""
    source = (
        REPO
        / ".venv-labelstudio"
        / "lib"
        / "python3.11"
        / "site-packages"
        / "label_studio"
        / "core"
        / "utils"
        / "io.py"
    )
    if source.is_file():  # the installed Label Studio says the same (make labelling-install)
        text = source.read_text()
        block = text[text.index("default_banned_subnets = [") :]
        block = block[: block.index("]")]
        assert re.findall(r"'([^']+)',", block) == LABEL_STUDIO_BANNED
    env = env_of(container(helm_template(*IN_CHART), "Deployment", "label-studio"))
    assert "SSRF_PROTECTION_ENABLED" not in env  # on (Label Studio's default)
    assert env["USE_DEFAULT_BANNED_SUBNETS"] == "false"
    banned = str(env["USER_ADDITIONAL_BANNED_SUBNETS"]).split(",")
    assert banned == [s for s in LABEL_STUDIO_BANNED if s != "10.0.0.0/8"]
    # loopback and link-local (cloud metadata) stay blocked
    assert {"127.0.0.0/8", "169.254.0.0/16", "::1/128"} <= set(banned)
    # another cluster's Service network; and more than one
    docs = helm_template(*IN_CHART, "labelStudio.webhookAllowedSubnets={172.16.0.0/12,fc00::/7}")
    env = env_of(container(docs, "Deployment", "label-studio"))
    banned = str(env["USER_ADDITIONAL_BANNED_SUBNETS"]).split(",")
    assert banned == [s for s in LABEL_STUDIO_BANNED if s not in ("172.16.0.0/12", "fc00::/7")]
    # Label Studio without the receiver: its defaults as they are
    env = env_of(container(helm_template("labelStudio.enabled=true"), "Deployment", "label-studio"))
    assert "USE_DEFAULT_BANNED_SUBNETS" not in env and "USER_ADDITIONAL_BANNED_SUBNETS" not in env
    err = helm_fails(
        "auth.existingSecret=t", *IN_CHART, "labelStudio.webhookAllowedSubnets={10.96.0.0/12}"
    )
    assert '"10.96.0.0/12" is not one of Label Studio\'s blocked networks' in err
    assert "10.0.0.0/8" in err


def _receiver_command(c: dict) -> list[str]:
    """The receiver's arguments after `sentiops labels serve`."""
    assert c["command"] == ["sentiops", "labels", "serve"]
    return list(c["args"])


def parse_with_the_cli(argv: list[str]) -> dict:
    """`sentiops labels serve` arguments parsed by the real CLI (nothing is run)."""
    import typer

    from sentiops.cli.main import app

    serve = typer.main.get_command(app).commands["labels"].commands["serve"]  # type: ignore[attr-defined]
    return dict(serve.make_context("serve", list(argv)).params)


def test_the_receivers_command_line() -> None:
    """`sentiops labels serve` with the files of its three Secrets, the chart's store, the
    predictor's feedback API, the model name and the URL Label Studio calls it at — as the real
    CLI parses it."""
    docs = helm_template(*IN_CHART)
    c = container(docs, "Deployment", "sentiops-labelling")
    assert c["image"] == "sentiops/serving:0.1.0"  # has the CLI, uvicorn and httpx
    params = parse_with_the_cli(_receiver_command(c))
    assert {k: str(v) for k, v in params.items()} == {
        "webhook_secret_file": "/var/run/sentiops/labelling-webhook/secret",
        "studio_url": "http://label-studio.prod.svc.cluster.local:8080",
        "studio_token_file": "/var/run/sentiops/labelstudio/token",
        "store": "s3://sentiops",
        "feedback_url": "http://sentiment-predictor.prod.svc.cluster.local",
        "token_file": "/var/run/sentiops/labelling-token/labelstudio",
        "model_name": "sentiment",
        "overlap": "1",
        "host": "0.0.0.0",
        "port": "9082",
        "public_url": "http://sentiops-labelling.prod.svc.cluster.local:9082",
        "interval": "30.0",
    }
    spec = one(docs, "Deployment", "sentiops-labelling")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    # each file is the one key of its Secret, mounted read-only
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    want = {
        "webhook-secret": ("sentiops-labelling-webhook", "secret", "secret"),
        "studio-token": ("sentiops-labelstudio", "token", "token"),
        "feedback-token": ("sentiops-annotator-tokens", "labelstudio", "labelstudio"),
    }
    assert set(volumes) == set(want)
    for name, (secret, key, path) in want.items():
        assert volumes[name]["secretName"] == secret
        assert volumes[name]["items"] == [{"key": key, "path": path}]
        assert mounts[name]["readOnly"] is True
        target = f"{mounts[name]['mountPath']}/{path}"
        assert target in {str(v) for v in params.values()}, target
    # the receiver holds no other token, no signing key, no sample key (sink api)
    assert secret_names(pod) == {
        "sentiops-labelling-webhook",
        "sentiops-labelstudio",
        "sentiops-annotator-tokens",
        "sentiops-s3-labelling",
    }
    probes = (c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"])
    assert probes == ({"path": "/healthz", "port": "http"},) * 2


def test_an_existing_label_studio() -> None:
    """labelStudio.url + existingTokenSecret: no Label Studio, no PostgreSQL; the receiver
    talks to the URL with the token of that Secret (its key by value)."""
    docs = helm_template(*EXISTING, "labelStudio.existingTokenSecretKey=api-token")
    assert ids(docs) >= LABELLING_OBJECTS
    assert not ids(docs) & (LABEL_STUDIO_OBJECTS | POSTGRESQL_OBJECTS)
    c = container(docs, "Deployment", "sentiops-labelling")
    params = parse_with_the_cli(_receiver_command(c))
    assert params["studio_url"] == "https://label.example.com"
    pod = one(docs, "Deployment", "sentiops-labelling")["spec"]["template"]["spec"]
    (studio,) = [v["secret"] for v in pod["volumes"] if v["name"] == "studio-token"]
    assert studio["secretName"] == "ls-token"
    assert studio["items"] == [{"key": "api-token", "path": "token"}]
    # the webhook URL it registers in that instance, when it reaches the receiver elsewhere
    docs = helm_template(*EXISTING, "labelling.publicUrl=https://labelling.example.com")
    c = container(docs, "Deployment", "sentiops-labelling")
    assert parse_with_the_cli(_receiver_command(c))["public_url"] == (
        "https://labelling.example.com"
    )


def test_the_store_sink() -> None:
    """labelling.sink=store: no feedback API, no feedback token; the intake writes the store
    with the receiver's S3 identity and the evaluation-sample key (read-only)."""
    docs = helm_template(*IN_CHART, "labelling.sink=store")
    c = container(docs, "Deployment", "sentiops-labelling")
    params = parse_with_the_cli(_receiver_command(c))
    assert params["feedback_url"] == "" and params["token_file"] is None
    pod = one(docs, "Deployment", "sentiops-labelling")["spec"]["template"]["spec"]
    assert key_files(c, pod["volumes"]) == {
        "SENTIOPS_SAMPLE_SECRET_FILE": (
            "/var/run/sentiops/eval-sample/key",
            "sentiops-eval-sample",
            ["key"],
        )
    }
    assert "sentiops-annotator-tokens" not in secret_names(pod)
    # and the predictor's NetworkPolicy does not list the receiver then
    pred = one(docs, "NetworkPolicy", "sentiops-predictor")
    assert "sentiops-labelling" not in str(pred["spec"])


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ("labelling.enabled=true",),
            "labelling.enabled=true needs a Label Studio: set labelStudio.enabled=true",
        ),
        (
            ("labelling.enabled=true", "labelStudio.url=https://ls.example.com"),
            "or point at an existing instance with labelStudio.url=https://... and "
            "labelStudio.existingTokenSecret=",
        ),
        (
            ("labelling.enabled=true", "labelStudio.existingTokenSecret=t"),
            "labelling.enabled=true needs a Label Studio",
        ),
        (
            (*IN_CHART, "labelStudio.url=https://ls.example.com"),
            "labelStudio.enabled=true runs Label Studio in the chart, and labelStudio.url/"
            "labelStudio.existingTokenSecret name an existing one: choose one",
        ),
        (
            (*IN_CHART, "inferenceService.feedback.enabled=false"),
            "labelling.sink=api sends labels to the predictor's feedback API, but "
            "inferenceService.feedback.enabled=false",
        ),
        (
            (
                *IN_CHART,
                "labelling.sink=store",
                "inferenceService.feedback.enabled=false",
                "drift.enabled=false",
                "evalSample.existingSecret=",
            ),
            "labelling.sink=store stores labels with their evaluation-sample decision",
        ),
        ((*IN_CHART, "labelling.webhookSecret="), "labelling.webhookSecret is empty"),
    ],
)
def test_half_configured_labelling_does_not_render(sets: tuple[str, ...], message: str) -> None:
    err = helm_fails("auth.existingSecret=sentiops-annotator-tokens", *sets)
    assert message in err, err


@pytest.mark.parametrize(
    "bad",
    [
        "labelling.sink=somewhere",
        "labelling.port=0",
        "labelling.overlap=0",
        "labelStudio.url=ftp://x",
        "labelStudio.existingTokenSecret=Not_A_Name",
        "labelStudio.admin.secret=",
        "labelStudio.postgresql.password=secret",  # never a password in values
        "labelStudio.token=abc",
    ],
)
def test_values_schema_rejects_bad_labelling_values(bad: str) -> None:
    err = helm_fails("auth.existingSecret=sentiops-annotator-tokens", *IN_CHART, bad)
    assert "values don't meet the specifications of the schema" in err, err


# ---------------------------------------------------------------- locked down


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_mode_validates_and_is_locked_down(version: str) -> None:
    """Each mode's objects are valid Kubernetes (strict), every pod non-root with a read-only
    root filesystem, no privilege escalation, no capabilities, resources, no API token; every
    credential in the environment comes from a Secret."""
    renders = {
        "in-chart": helm_template(*IN_CHART),
        "existing": helm_template(*EXISTING),
        "store+existing-db": helm_template(
            *IN_CHART, "labelling.sink=store", "labelStudio.postgresql.existingSecret=ls-db"
        ),
        "label-studio-only": helm_template("labelStudio.enabled=true"),
    }
    errors = []
    for render, docs in renders.items():
        errors += lockdown_problems(render, docs)
        for doc in docs:
            if doc["apiVersion"].split("/")[0] in CRD_GROUPS:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{render} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
            for env in _walk_env(doc):
                secretish = SECRET_ENV.search(env["name"]) and not env["name"].endswith("_FILE")
                if secretish and "secretKeyRef" not in env.get("valueFrom", {}):
                    errors.append(f"{render} {doc['metadata']['name']}: {env['name']}")
        assert not by_kind(docs, "Secret"), render
        for kind, name in ids(docs) & {("Deployment", "label-studio")}:
            sc = container(docs, kind, name)["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
    assert not errors, "\n".join(errors)


def test_an_existing_database_comes_from_its_secret() -> None:
    docs = helm_template(*IN_CHART, "labelStudio.postgresql.existingSecret=ls-db")
    assert not ids(docs) & POSTGRESQL_OBJECTS
    env = env_of(container(docs, "Deployment", "label-studio"))
    for var, key in {
        "POSTGRE_HOST": "host",
        "POSTGRE_PORT": "port",
        "POSTGRE_NAME": "database",
        "POSTGRE_USER": "username",
        "POSTGRE_PASSWORD": "password",
    }.items():
        assert env[var] == ("secret", "ls-db", key), var
    # egress to it: any address on its port, or the peers named
    egress = one(docs, "NetworkPolicy", "label-studio")["spec"]["egress"]
    assert egress[0] == {"ports": [{"port": 5432, "protocol": "TCP"}]}
    docs = helm_template(
        *IN_CHART,
        "labelStudio.postgresql.existingSecret=ls-db",
        "labelStudio.postgresql.peers[0].ipBlock.cidr=10.20.0.5/32",
    )
    egress = one(docs, "NetworkPolicy", "label-studio")["spec"]["egress"]
    assert egress[0]["to"] == [{"ipBlock": {"cidr": "10.20.0.5/32"}}]


# ---------------------------------------------------------------- S3


def test_the_receiver_has_its_own_s3_identity() -> None:
    """The receiver's container sees only the labelling identity; Label Studio and its
    database none; the bucket Job creates the labelling user (with its policy) only now."""
    secrets = {**S3_SECRETS, "labelling": "sentiops-s3-labelling"}
    docs = helm_template(*IN_CHART)
    found = s3_secrets_by_container(docs, secrets)
    assert found["Deployment/sentiops-labelling/receiver"] == {"labelling"}
    assert found["Deployment/label-studio/label-studio"] == set()
    assert found["StatefulSet/label-studio-postgresql/postgresql"] == set()
    assert found["Job/minio-create-buckets/mc"] == {
        "root",
        "predictor",
        "drift",
        "mlflow",
        "pipeline",
        "labelling",
    }
    (mc,) = one(docs, "Job", "minio-create-buckets")["spec"]["template"]["spec"]["containers"]
    assert 'identity labelling "$LABELLING_ACCESS_KEY" "$LABELLING_SECRET_KEY"' in mc["args"][0]
    env = env_of(container(docs, "Deployment", "sentiops-labelling"))
    assert env["SENTIOPS_S3_ENDPOINT"] == "http://minio.prod.svc.cluster.local:9000"
    assert env["AWS_SECRET_ACCESS_KEY"] == (
        "secret",
        "sentiops-s3-labelling",
        "AWS_SECRET_ACCESS_KEY",
    )
    # the Secret's name is a value
    docs = helm_template(*IN_CHART, "s3.identities.labelling.secretName=lab")
    found = s3_secrets_by_container(docs, {**S3_SECRETS, "labelling": "lab"})
    assert found["Deployment/sentiops-labelling/receiver"] == {"labelling"}


# ---------------------------------------------------------------- NetworkPolicies


def _rule(rule: dict, docs: list[dict], key: str) -> tuple[set[str], list[dict], list]:
    """(workloads of the render the rule's pod-selector peers select, its other peers, its
    ports as (port, protocol))."""
    local: set[str] = set()
    other = []
    for peer in rule.get(key, []):
        if set(peer) == {"podSelector"}:
            selected = pods_selected(docs, peer["podSelector"])
            assert selected, f"peer {peer} selects no pod of the render"
            local |= selected
        else:
            other.append(peer)
    return local, other, [(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]]


def test_network_policies_select_the_right_pods() -> None:
    """Label Studio: its page and API from the receiver (and the annotators' way in, by
    value); egress to its database, the receiver's webhook port and DNS only. Its database:
    from Label Studio only. The receiver: webhooks from Label Studio (and Prometheus' scrape);
    it reaches MinIO and the predictor's feedback API."""
    annotators = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
    docs = helm_template(
        *IN_CHART,
        "labelStudio.networkPolicy.annotators[0].namespaceSelector.matchLabels"
        ".kubernetes\\.io/metadata\\.name=ingress",
    )
    ls = one(docs, "NetworkPolicy", "label-studio")["spec"]
    assert pods_selected(docs, ls["podSelector"]) == {"Deployment/label-studio"}
    assert ls["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = ls["ingress"]
    assert _rule(ingress, docs, "from") == (
        {"Deployment/sentiops-labelling"},
        [annotators],
        [(8080, "TCP")],
    )
    database, webhook, dns = ls["egress"]
    assert _rule(database, docs, "to") == (
        {"StatefulSet/label-studio-postgresql"},
        [],
        [(5432, "TCP")],
    )
    assert _rule(webhook, docs, "to") == ({"Deployment/sentiops-labelling"}, [], [(9082, "TCP")])
    assert _rule(dns, docs, "to") == (
        set(),
        [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        [(53, "UDP"), (53, "TCP")],
    )
    pg = one(docs, "NetworkPolicy", "label-studio-postgresql")["spec"]
    assert pods_selected(docs, pg["podSelector"]) == {"StatefulSet/label-studio-postgresql"}
    assert _rule(pg["ingress"][0], docs, "from") == (
        {"Deployment/label-studio"},
        [],
        [(5432, "TCP")],
    )
    rx = one(docs, "NetworkPolicy", "sentiops-labelling")["spec"]
    assert pods_selected(docs, rx["podSelector"]) == {"Deployment/sentiops-labelling"}
    assert rx["policyTypes"] == ["Ingress"]
    (rule,) = rx["ingress"]
    assert _rule(rule, docs, "from") == ({"Deployment/label-studio"}, PROMETHEUS, [(9082, "TCP")])
    # the receiver reaches MinIO and the predictor (its labels; Standard mode: directly)
    minio = one(docs, "NetworkPolicy", "minio")["spec"]["ingress"][0]
    assert "Deployment/sentiops-labelling" in _rule(minio, docs, "from")[0]
    pred = one(docs, "NetworkPolicy", "sentiops-predictor")["spec"]["ingress"][0]
    receiver = {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "sentiops-labelling",
                "app.kubernetes.io/instance": "x",
            }
        }
    }
    assert receiver in pred["from"]
    # nobody else selects Label Studio's pods as a peer
    for np in by_kind(docs, "NetworkPolicy"):
        if np["metadata"]["name"] not in ("label-studio-postgresql", "sentiops-labelling"):
            assert "label-studio" not in str(np["spec"].get("ingress")), np["metadata"]["name"]


def test_network_policies_of_the_other_modes() -> None:
    # an existing instance: the receiver takes webhooks from the peers named (and Prometheus)
    peer = {"ipBlock": {"cidr": "203.0.113.7/32"}}
    docs = helm_template(*EXISTING, "labelling.webhookPeers[0].ipBlock.cidr=203.0.113.7/32")
    (rule,) = one(docs, "NetworkPolicy", "sentiops-labelling")["spec"]["ingress"]
    assert _rule(rule, docs, "from") == (set(), [peer, *PROMETHEUS], [(9082, "TCP")])
    docs = helm_template(*EXISTING, "networkPolicy.prometheus=null")
    assert one(docs, "NetworkPolicy", "sentiops-labelling")["spec"]["ingress"] == []
    # Label Studio alone: nobody may connect (port-forward only), no webhook egress
    docs = helm_template("labelStudio.enabled=true")
    ls = one(docs, "NetworkPolicy", "label-studio")["spec"]
    assert ls["ingress"] == []
    assert [r["ports"][0]["port"] for r in ls["egress"]] == [5432, 53]
    # more egress by value (e.g. an ML backend)
    docs = helm_template(
        "labelStudio.enabled=true",
        "labelStudio.networkPolicy.egress[0].ports[0].port=9090",
    )
    assert one(docs, "NetworkPolicy", "label-studio")["spec"]["egress"][-1] == {
        "ports": [{"port": 9090}]
    }
    # no NetworkPolicies at all when switched off
    docs = helm_template(*IN_CHART, "networkPolicy.enabled=false")
    assert not by_kind(docs, "NetworkPolicy")


def test_the_secrets_script_makes_what_labelling_names() -> None:
    """`make secrets LABELLING=1` (create-secrets.sh) creates every Secret and key the
    in-chart render names (test_apiserver_labelling runs it against a real API server)."""
    script = (REPO / "scripts" / "cluster" / "create-secrets.sh").read_text()
    docs = helm_template(*IN_CHART)
    names = set()
    for d in docs:
        names |= secret_names(d)
    labelling = {n for n in names if "label" in n}
    assert labelling == {
        "sentiops-s3-labelling",
        "sentiops-labelling-webhook",
        "sentiops-labelstudio",
        "sentiops-labelstudio-postgresql",
    }
    for name in labelling:
        assert name in script, name
    assert 'LABELLING="${LABELLING:-0}"' in script
    assert "stringData" in script and "labelstudio" in script


def test_docs_describe_the_cluster_mode() -> None:
    text = Path(REPO / "docs" / "labelling.md").read_text()
    for needle in (
        "## On a cluster",
        "labelStudio.enabled",
        "labelStudio.existingTokenSecret",
        "make secrets LABELLING=1",
        "webhookAllowedSubnets",
    ):
        assert needle in text, needle


def test_prometheus_scrapes_the_receiver() -> None:
    """The console's labelling section (agreement, held tasks) reads Prometheus: a PodMonitor
    selects the receiver's pods on its named port, which its NetworkPolicy opens to
    Prometheus."""
    docs = helm_template(*EXISTING)
    pm = one(docs, "PodMonitor", "sentiops-labelling")["spec"]
    assert pods_selected(docs, pm["selector"]) == {"Deployment/sentiops-labelling"}
    (endpoint,) = pm["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["relabelings"] == [{"targetLabel": "job", "replacement": "sentiops-labelling"}]
    c = container(docs, "Deployment", "sentiops-labelling")
    assert [p["name"] for p in c["ports"]] == ["http"]
    assert not by_kind(helm_template(), "PodMonitor", "sentiops-labelling")
    assert not by_kind(
        helm_template(*EXISTING, "monitoring.podMonitor.enabled=false"),
        "PodMonitor",
        "sentiops-labelling",
    )


@pytest.mark.parametrize("sets", [IN_CHART, EXISTING, ("labelStudio.enabled=true",)])
def test_helm_lint_strict_and_the_notes_name_the_secrets(sets: tuple[str, ...]) -> None:
    args = [a for s in sets for a in ("--set", s)]
    out = run([tool("helm"), "lint", "--strict", str(CHART), *REQUIRED_SET, *args]).stdout
    assert "0 chart(s) failed" in out
    notes = run(
        [tool("helm"), "install", "--dry-run", "x", str(CHART), "-n", "prod", *REQUIRED_SET, *args]
    ).stdout
    notes = notes[notes.index("NOTES:") :]
    assert "LABELLING=1 bash scripts/cluster/create-secrets.sh" in notes
    if "labelStudio.enabled=true" in sets:
        assert "sentiops-labelstudio-postgresql" in notes
    if "labelling.enabled=true" in sets:
        assert "sentiops-labelling-webhook" in notes and "sentiops-s3-labelling" in notes
