"""The Docker/kind targets cannot run here; prove they are well-formed (`make -n`) instead."""

from __future__ import annotations

import os

import pytest
import yaml

from .harness import REPO, run

SCRIPTS = sorted((REPO / "scripts").glob("*/*.sh"))


def make_n(*targets: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return run(["make", "-n", "--no-print-directory", *targets], env=env, cwd=REPO).stdout


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            "kind-up",
            [
                "kind create cluster --config kind-config.yaml --name sentiops",
                "bash scripts/cluster/kind-up.sh",
            ],
        ),
        (
            "images",
            [
                "BUILDER=docker IMAGE_PREFIX=dev.local/sentiops IMAGE_TAG=dev bash "
                "scripts/images/build.sh",
                "kind load docker-image --name sentiops",
            ],
        ),
        (
            "images-buildah",
            [
                "BUILDER=buildah IMAGE_PREFIX=dev.local/sentiops IMAGE_TAG=dev "
                "bash scripts/images/build.sh"
            ],
        ),
        ("images-push", ["docker push dev.local/sentiops/serving:dev"]),
        (
            "deploy",
            [
                "NAMESPACE=sentiops KFP_NAMESPACE=kubeflow",
                "bash scripts/cluster/create-secrets.sh",
                "kubectl -n sentiops delete job minio-create-buckets --ignore-not-found",
                "kubectl apply --server-side --field-manager=sentiops -k manifests/overlays/kind",
                "wait --for=condition=Ready isvc/sentiment",
            ],
        ),
        (
            "deploy-helm",
            [
                "bash scripts/cluster/create-secrets.sh",
                "upgrade --install sentiops helm/sentiops -n sentiops",
                "--set auth.existingSecret=sentiops-annotator-tokens",
            ],
        ),
        ("secrets", ["bash scripts/cluster/create-secrets.sh"]),
        (
            "pipeline-submit",
            [
                "sentiops pipeline submit --host http://localhost:8888 "
                "--image dev.local/sentiops/components:dev"
            ],
        ),
        ("port-forward", ["bash scripts/cluster/port-forward.sh sentiops"]),
        ("verify-cluster", ["pytest tests/cluster -q"]),
    ],
)
def test_make_targets_expand(target: str, expected: list[str]) -> None:
    out = " ".join(make_n(target).split())
    for fragment in expected:
        assert fragment in out, f"{target}: {fragment!r} not in\n{out}"


def test_overlay_switch() -> None:
    assert "-k manifests/overlays/cloud" in make_n("deploy", "OVERLAY=cloud")


def test_kind_config() -> None:
    cfg = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert cfg["kind"] == "Cluster" and cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert cfg["name"] == "sentiops"
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane", "worker"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse(script) -> None:
    run(["bash", "-n", str(script)])
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()
    assert os.access(script, os.X_OK)
