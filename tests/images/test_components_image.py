"""The components image, built for real (buildah) and run: the KFP executor entry point of the
compiled pipeline's `validate` step on a small table, as a non-root user, writing nothing
outside /tmp; no pip, compiler or test data in the image."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sentiops.pipeline.kubeflow import COMPILED
from tests.conftest import make_frame

from . import oci

pytestmark = [pytest.mark.integration, pytest.mark.images]


@pytest.fixture(scope="module")
def built() -> str:
    oci.build("components")
    return oci.image("components")


def test_config_runs_as_non_root_with_home_in_tmp(built: str) -> None:
    cfg = oci.config("components")
    assert cfg["User"] == "10001:10001"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["HOME"] == "/tmp" and env["PIP_NO_INDEX"] == "1"


def _executor_input(data: Path) -> dict:
    art = lambda name, kind, uri: {  # noqa: E731
        "artifacts": [
            {"name": name, "type": {"schemaTitle": f"system.{kind}"}, "uri": uri, "metadata": {}}
        ]
    }
    return {
        "inputs": {
            "artifacts": {"raw": art("raw", "Dataset", "/data/raw.parquet")},
            "parameterValues": {"min_per_class": 10, "drop_invalid": False},
        },
        "outputs": {
            "artifacts": {
                "clean": art("clean", "Dataset", "/tmp/out/clean"),
                "report": art("report", "Markdown", "/tmp/out/report"),
                "stats": art("stats", "Metrics", "/tmp/out/stats"),
            },
            "outputFile": "/tmp/out/executor_output.json",
        },
    }


def test_validate_component_runs_from_the_compiled_pipeline(built: str, tmp_path: Path) -> None:
    spec = next(yaml.safe_load_all(COMPILED.read_text()))
    step = spec["deploymentSpec"]["executors"]["exec-validate"]["container"]
    assert step["image"].endswith("/components:0.1.0") or "components" in step["image"]
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    out.chmod(0o777)  # the image's user (uid 10001) writes the step's outputs here
    raw = make_frame(30)
    raw["_source"], raw["_row"] = "d.csv", range(1, len(raw) + 1)
    raw.to_parquet(data / "raw.parquet", index=False)
    args = [a.replace("{{$}}", json.dumps(_executor_input(data))) for a in step["args"]]
    with oci.container("components") as c:
        since = time.time()
        proc = c.run([*step["command"], *args], {data: "/data", out: "/tmp/out"})
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "Data validation: PASSED" in proc.stdout
        assert c.changed_outside_tmp(since) == []
        assert c.run(["id", "-u"]).stdout.strip() == "10001"
    clean = pd.read_parquet(out / "clean")
    assert len(clean) == 90
    output = json.loads((out / "executor_output.json").read_text())
    assert output["artifacts"]["clean"]["artifacts"][0]["metadata"]["rows"] == 90


def test_image_holds_no_pip_compiler_or_test_data(built: str) -> None:
    found = oci.hygiene("components", "sentiops")
    assert not found["pip"] and found["compilers"] == [] and found["test_data"] == []
    assert "kfp" in found["stacks"] and "kserve" not in found["stacks"]
    with oci.container("components") as c:
        datasets = c.run(["ls", "/opt/sentiops/datasets"]).stdout.split()
    assert "vader-tweets" in datasets  # the built-in data is baked in
