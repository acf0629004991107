"""Tools and loopback servers for the cluster verification: etcd, kube-apiserver, Prometheus.

Every server binds 127.0.0.1 on a free port, lives in a temp dir, runs in its own process
group and is stopped by PID (SIGTERM, then SIGKILL) by the fixture that started it.
A missing tool FAILS the test with a pointer to `make cluster-tools`; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import pytest
import yaml

from sentiops.local.processes import Process, free_port, start_process
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = (
    Path(
        os.environ.get(
            "SENTIOPS_TOOLS_DIR",
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sentiops-tools",
        )
    )
    / "bin"
)


#: Values the chart has no default for: it refuses to render `:feedback` (on by default) without
#: an annotator token Secret. `make deploy`, `make deploy-helm` and the kustomize base
#: (scripts/cluster/render_manifests.py BASE_VALUES) name the one scripts/cluster/create-secrets.sh
#: creates; every render and install in these tests does the same.
REQUIRED_VALUES = ("auth.existingSecret=sentiops-annotator-tokens",)
REQUIRED_SET = tuple(f"--set={v}" for v in REQUIRED_VALUES)


def crds_dir() -> Path:
    """KServe CRDs: $SENTIOPS_CRDS_DIR, else the copy vendored in tests/cluster/crds."""
    path = Path(os.environ.get("SENTIOPS_CRDS_DIR", REPO / "tests" / "cluster" / "crds"))
    if not (path / "serving.kserve.io_inferenceservices.yaml").is_file():
        pytest.fail(
            f"KServe CRDs not found in {path}: SENTIOPS_CRDS_DIR must name a folder with "
            "serving.kserve.io_inferenceservices.yaml (unset it to use tests/cluster/crds)",
            pytrace=False,
        )
    return path


def crd_for_apiserver_1_20(path: Path) -> str:
    """A KServe CRD as JSON, minus its `default: ""` entries.

    The test kube-apiserver is 1.20 (what Debian's source package builds); it rejects empty-
    string defaults in CRD schemas ("must be of type string: null"), which newer API servers
    accept. Only those defaults are dropped; schema validation in test_manifests uses the
    unmodified CRD.
    """

    def strip(node: object) -> None:
        if isinstance(node, dict):
            if node.get("default") == "":
                del node["default"]
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)

    doc = yaml.safe_load(path.read_text())
    strip(doc)
    return json.dumps(doc, separators=(",", ":"))


#: The Gateway API HTTPRoute CRD (v1.5.1, what KServe 0.20 builds on), in the repository.
HTTPROUTE_CRD = "gateway.networking.k8s.io_httproutes.yaml"


def httproute_crd_for_apiserver_1_20() -> str:
    """The HTTPRoute CRD minus what a 1.20 API server does not know: CEL rules
    (`x-kubernetes-validations`; test_shadow_kserve's `cel_rules` checks what the rollout
    writes) and empty-string defaults (see crd_for_apiserver_1_20); without the file's `status`
    (the server's own, which a second server-side apply would conflict with)."""

    def strip(node: object) -> None:
        if isinstance(node, dict):
            node.pop("x-kubernetes-validations", None)
            if node.get("default") == "":
                del node["default"]
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)

    doc = yaml.safe_load((REPO / "tests" / "cluster" / "crds" / HTTPROUTE_CRD).read_text())
    doc.pop("status", None)
    strip(doc)
    return json.dumps(doc, separators=(",", ":"))


def tool(name: str) -> str:
    """Path of a verification tool: the sentiops-tools cache first, then PATH."""
    cached = TOOLS_BIN / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(
        f"{name} not found (looked in {TOOLS_BIN} and PATH): run make cluster-tools", pytrace=False
    )


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command quietly; on failure, fail the test with its output."""
    proc = subprocess.run(
        list(args),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"command failed ({proc.returncode}): {' '.join(args)}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc


# one implementation of child servers for the product and its tests: sentiops.local.stack
Server = Process


def start(name: str, args: Sequence[str], workdir: Path) -> Server:
    return start_process(name, list(args), workdir)


def wait_for_server(check, server: Server, timeout: float, what: str) -> None:
    """`check()` true while `server` runs (tests.helpers.wait_until; its log tail on a failure)."""

    def ready() -> bool:
        if server.proc.poll() is not None:
            pytest.fail(
                f"{server.name} exited ({server.proc.returncode}) before {what}:\n{server.tail()}",
                pytrace=False,
            )
        return bool(check())

    wait_until(ready, timeout=timeout, what=f"{server.name}: {what}", detail=server.tail)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


#: Users with a static token besides admin: (user name, groups). The pipeline's ServiceAccount
#: in the namespace the rollout test installs the chart into, to run the rollout as it.
ROLLOUT_NAMESPACE = "sentiops-rollout"
TOKEN_USERS = {
    "pipeline": (
        f"system:serviceaccount:{ROLLOUT_NAMESPACE}:sentiops-pipeline",
        f"system:serviceaccounts,system:serviceaccounts:{ROLLOUT_NAMESPACE}",
    ),
}


@dataclass
class ApiServer:
    """etcd + kube-apiserver on loopback, an admin kubeconfig, and kubectl/helm helpers."""

    workdir: Path
    kubeconfig: Path
    url: str
    servers: list[Server] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)

    def kubeconfig_for(self, who: str) -> Path:
        """A kubeconfig that authenticates with `who`'s static token (see TOKEN_USERS)."""
        path = self.workdir / f"kubeconfig-{who}"
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: t\n  cluster:\n    server: {self.url}\n"
            "    insecure-skip-tls-verify: true\n"
            f"users:\n- name: {who}\n  user:\n    token: {self.tokens[who]}\n"
            f"contexts:\n- name: t\n  context:\n    cluster: t\n    user: {who}\n"
            "current-context: t\n"
        )
        return path

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["HELM_CACHE_HOME"] = str(self.workdir / "helm-cache")
        env["HELM_CONFIG_HOME"] = str(self.workdir / "helm-config")
        env["HELM_DATA_HOME"] = str(self.workdir / "helm-data")
        return env

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [tool("kubectl"), *args], check=check, input=input, env=self.env, timeout=timeout
        )

    def helm(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return run([tool("helm"), *args], check=check, env=self.env, timeout=timeout)

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """`kubectl wait --for=condition=Established` on CRDs just applied; again while a CRD has
        no status yet (kubectl then fails at once: ".status.conditions accessor error")."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self.kubectl(
                "wait",
                "--for=condition=Established",
                f"--timeout={int(timeout)}s",
                *crds,
                check=False,
                timeout=timeout + 30,
            )
            if proc.returncode == 0:
                return
            if "accessor error" not in proc.stderr or time.monotonic() > deadline:
                pytest.fail(f"CRDs not established: {proc.stdout}{proc.stderr}", pytrace=False)
            time.sleep(0.5)

    def can_i(self, user: str, verb: str, resource: str, namespace: str | None) -> bool:
        args = ["auth", "can-i", verb, resource, f"--as={user}"]
        args += [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
        proc = self.kubectl(*args, check=False)
        answer = proc.stdout.strip().splitlines()[-1:] or [""]
        if answer[0] not in ("yes", "no"):
            pytest.fail(
                f"kubectl auth can-i gave no answer: {proc.stdout} {proc.stderr}", pytrace=False
            )
        return answer[0] == "yes"


class PlaysController(threading.Thread):
    """A controller the test cluster does not run (KServe, a gateway), played by a thread:
    `step()` every 0.05 s with an admin CustomObjectsApi (`self.api`) until stopped. The
    rollout tests' fixtures: `with Controller(kube).running() as c: yield c`."""

    def __init__(self, kube: ApiServer) -> None:
        super().__init__(daemon=True)
        from kubernetes import client

        from sentiops.rollout.kserve import api_client

        self.api = client.CustomObjectsApi(api_client(str(kube.kubeconfig)))
        self.stop = threading.Event()

    def step(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        while not self.stop.is_set():
            self.step()
            time.sleep(0.05)

    @contextlib.contextmanager
    def running(self, settle: float = 0.0) -> Iterator[Self]:
        """Started (and `settle` seconds given to its first steps), stopped at the end."""
        self.start()
        time.sleep(settle)
        try:
            yield self
        finally:
            self.stop.set()
            self.join(5)


@contextlib.contextmanager
def apiserver(workdir: Path) -> Iterator[ApiServer]:
    """Start etcd and kube-apiserver (RBAC, token auth) on free loopback ports."""
    etcd_bin, apiserver_bin, openssl = tool("etcd"), tool("kube-apiserver"), tool("openssl")
    tool("kubectl")
    certs = workdir / "certs"
    certs.mkdir()
    run([openssl, "genrsa", "-out", str(certs / "sa.key"), "2048"])
    run([openssl, "rsa", "-in", str(certs / "sa.key"), "-pubout", "-out", str(certs / "sa.pub")])
    token = os.urandom(16).hex()
    tokens = {who: os.urandom(16).hex() for who in TOKEN_USERS}
    (workdir / "tokens.csv").write_text(
        f'{token},admin,admin-uid,"system:masters"\n'
        + "".join(
            f'{tokens[who]},{user},{who}-uid,"{groups}"\n'
            for who, (user, groups) in TOKEN_USERS.items()
        )
    )

    servers: list[Server] = []
    try:
        client, peer = free_port(), free_port()
        etcd = start(
            "etcd",
            [
                etcd_bin,
                "--name=default",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--max-request-bytes=16777216",  # the InferenceService CRD is ~2 MB
                "--log-level=warn",
            ],
            workdir,
        )
        servers.append(etcd)
        wait_for_server(lambda: port_open(client), etcd, 30, "client port open")

        port = free_port()
        kas = start(
            "kube-apiserver",
            [
                apiserver_bin,
                f"--etcd-servers=http://127.0.0.1:{client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                "--insecure-port=0",
                f"--cert-dir={certs}",
                f"--token-auth-file={workdir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={certs / 'sa.pub'}",
                f"--service-account-signing-key-file={certs / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                # no controller-manager runs: the ServiceAccount admission would wait for tokens
                "--disable-admission-plugins=ServiceAccount",
                "--v=0",
            ],
            workdir,
        )
        servers.append(kas)
        url = f"https://127.0.0.1:{port}"
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: t\n  cluster:\n    server: {url}\n"
            "    insecure-skip-tls-verify: true\n"
            f"users:\n- name: admin\n  user:\n    token: {token}\n"
            "contexts:\n- name: t\n  context:\n    cluster: t\n    user: admin\n"
            "current-context: t\n"
        )
        api = ApiServer(
            workdir=workdir, kubeconfig=kubeconfig, url=url, servers=servers, tokens=tokens
        )

        def ready() -> bool:
            proc = api.kubectl("get", "--raw=/readyz", check=False, timeout=10)
            return proc.returncode == 0 and proc.stdout.strip() == "ok"

        wait_for_server(ready, kas, 90, "/readyz ok")
        yield api
    finally:
        for server in reversed(servers):
            server.stop()


def secret_names(node: object) -> set[str]:
    """Every Secret a rendered object references: env (`secretKeyRef`), `envFrom`
    (`secretRef`), volumes (`secret.secretName`) and a ServiceAccount's `secrets`."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("secretKeyRef", "secretRef") and isinstance(value, dict):
                found.add(value["name"])
            elif key == "secret" and isinstance(value, dict) and "secretName" in value:
                found.add(value["secretName"])
            elif key == "secrets" and isinstance(value, list):  # a ServiceAccount's
                found |= {s["name"] for s in value if isinstance(s, dict) and "name" in s}
            else:
                found |= secret_names(value)
    elif isinstance(node, list):
        for value in node:
            found |= secret_names(value)
    return found
