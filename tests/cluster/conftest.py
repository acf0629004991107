"""Fixtures for the cluster verification (rendered manifests, a real kube-apiserver)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .harness import (
    REPO,
    REQUIRED_SET,
    REQUIRED_VALUES,
    ROLLOUT_NAMESPACE,
    ApiServer,
    apiserver,
    crd_for_apiserver_1_20,
    crds_dir,
    run,
    tool,
)

OVERLAYS = ("kind", "cloud")
CHART = REPO / "helm" / "sentiops"


def load_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def helm_template(
    *sets: str, required: bool = True, release: str = "x", namespace: str | None = "prod"
) -> list[dict]:
    """The chart rendered (`helm template`) as `release` in `namespace` (None: helm's default),
    with the required values (unless `required=False`) and then `sets`."""
    args = [
        a for value in (*(REQUIRED_VALUES if required else ()), *sets) for a in ("--set", value)
    ]
    where = ["-n", namespace] if namespace else []
    return load_docs(run([tool("helm"), "template", release, str(CHART), *where, *args]).stdout)


def helm_fails(*sets: str) -> str:
    """`helm template` with only `sets`, which must fail: its error output."""
    args = [a for value in sets for a in ("--set", value)]
    proc = run([tool("helm"), "template", "x", str(CHART), "-n", "prod", *args], check=False)
    assert proc.returncode != 0, f"rendered with {sets}"
    return proc.stderr


def by_kind(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = by_kind(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, got {len(found)}"
    return found[0]


@pytest.fixture(scope="session")
def helm_default() -> str:
    """`helm template` of the chart with default values and the required ones (namespace
    sentiops): what the kustomize base is generated from."""
    return run(
        [tool("helm"), "template", "sentiops", str(CHART), "--namespace", "sentiops", *REQUIRED_SET]
    ).stdout


@pytest.fixture(scope="session")
def helm_docs(helm_default: str) -> list[dict]:
    return load_docs(helm_default)


@pytest.fixture(scope="session")
def overlay_yaml() -> dict[str, str]:
    """`kubectl kustomize` of every overlay."""
    return {
        name: run(
            [tool("kubectl"), "kustomize", str(REPO / "manifests" / "overlays" / name)]
        ).stdout
        for name in OVERLAYS
    }


@pytest.fixture(scope="session")
def overlay_docs(overlay_yaml: dict[str, str]) -> dict[str, list[dict]]:
    return {name: load_docs(text) for name, text in overlay_yaml.items()}


@pytest.fixture(scope="package")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A real etcd + kube-apiserver on loopback, stopped by PID after the cluster tests."""
    workdir: Path = tmp_path_factory.mktemp("kube")
    with apiserver(workdir) as api:
        yield api


@pytest.fixture(scope="package")
def release(kube: ApiServer) -> ApiServer:
    """The KServe CRDs and the chart installed into the rollout namespace (the pipeline's
    ServiceAccount there has a static token: `kube.kubeconfig_for("pipeline")`); shared by
    the canary (test_rollout_kserve) and shadow (test_shadow_kserve) rollout tests."""
    for crd in sorted(crds_dir().glob("serving.kserve.io_*.yaml")):
        kube.kubectl("apply", "--server-side", "-f", "-", input=crd_for_apiserver_1_20(crd))
    kube.wait_established("crd/inferenceservices.serving.kserve.io")
    kube.helm(
        "install",
        "sentiops",
        str(CHART),
        f"--namespace={ROLLOUT_NAMESPACE}",
        "--create-namespace",
        "--no-hooks",
        "--timeout=120s",
        *REQUIRED_SET,
        "--set=monitoring.podMonitor.enabled=false",
        "--set=monitoring.prometheusRule.enabled=false",
    )
    return kube
