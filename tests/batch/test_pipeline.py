"""The KFP batch pipeline: compiled YAML (fresh, the ParallelFor over the plan's shards, images,
secrets) and a kfp.local run against a real S3 server, run twice (the second resumes)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kfp import components as kfp_components
from typer.testing import CliRunner

from sentiops.pipeline.kubeflow import BATCH_COMPILED, components
from sentiops.pipeline.kubeflow.batch import build, compile_pipeline
from sentiops.store import storage
from tests.batch.conftest import table, write
from tests.conftest import gate_and_pipeline_app


def _docs(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


def test_compiled_batch_yaml_is_fresh(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(components.IMAGE_ENV, raising=False)
    fresh = compile_pipeline(tmp_path / "batch.yaml")
    assert _docs(fresh) == _docs(BATCH_COMPILED), (
        f"{BATCH_COMPILED} is stale: run `sentiops pipeline compile --pipeline batch --output "
        "sentiops/pipeline/kubeflow/compiled/batch.yaml` and commit it"
    )
    assert (Path(__file__).parents[2] / "pipelines" / "batch.yaml").resolve() == BATCH_COMPILED


def test_batch_yaml_fans_out_over_the_plans_shards() -> None:
    spec, platform = _docs(BATCH_COMPILED)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"batch-plan", "for-loop-1", "batch-summary"}
    loop = tasks["for-loop-1"]
    assert loop["dependentTasks"] == ["batch-plan"]
    assert loop["parameterIterator"]["items"] == {
        "inputParameter": "pipelinechannel--batch-plan-Output"
    }
    assert loop["iteratorPolicy"]["parallelismLimit"] == 8
    assert set(spec["components"]["comp-for-loop-1"]["dag"]["tasks"]) == {"batch-score"}
    assert tasks["batch-summary"]["dependentTasks"] == ["for-loop-1"]  # dsl.Collected
    executors = spec["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-batch-plan", "exec-batch-score", "exec-batch-summary"}
    for name, ex in executors.items():
        assert ex["container"]["image"] == components.DEFAULT_IMAGE, name
        assert "pip install" not in " ".join(ex["container"]["command"]), name
    score = executors["exec-batch-score"]["container"]["resources"]
    assert score["cpuRequest"] == 1 and score["memoryLimit"] == 3.221225472
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(k8s) == set(executors)
    for cfg in k8s.values():
        (secret,) = cfg["secretAsEnv"]
        assert secret["secretName"] == "sentiops-s3"
    loaded = kfp_components.load_component_from_file(str(BATCH_COMPILED))
    assert loaded.name == "sentiops-batch"
    assert {
        "model_uri",
        "input_uri",
        "output_uri",
        "text_column",
        "keep",
        "shard_rows",
        "batch_size",
        "restart",
        "s3_endpoint",
    } <= set(loaded.component_spec.inputs)


def test_compile_batch_with_another_image(tmp_path: Path) -> None:
    out = tmp_path / "b.yaml"
    res = CliRunner().invoke(
        gate_and_pipeline_app(),
        [
            "pipeline",
            "compile",
            "--pipeline",
            "batch",
            "--output",
            str(out),
            "--image",
            "reg.example/sentiops/components:1.2",
        ],
    )
    assert res.exit_code == 0, res.output
    images = {
        ex["container"]["image"] for ex in _docs(out)[0]["deploymentSpec"]["executors"].values()
    }
    assert images == {"reg.example/sentiops/components:1.2"}
    res = CliRunner().invoke(gate_and_pipeline_app(), ["pipeline", "compile", "--pipeline", "nope"])
    assert res.exit_code == 2 and "use training or batch" in res.output


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:.*no effect in the current local runner:UserWarning")
def test_kfp_local_run_over_s3_resumes(model_dir: Path, tmp_path: Path, s3: dict) -> None:
    """The pipeline under kfp.local (each step a subprocess of this interpreter, as a pod runs
    it): model, input and output on a real S3 server; the second run finds every shard
    finished and rewrites none."""
    from kfp import local

    model = storage.put_dir(model_dir, "s3://models/sentiment/1")
    store = storage.S3Store()
    store.ensure_bucket("data")
    df = table(30)  # 90 rows: shards of 40, 40, 10
    store.upload_file(write(df, tmp_path / "in.jsonl"), "s3://data/in/part-0.jsonl")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"))
    args = {
        "model_uri": model,
        "input_uri": "s3://data/in/",
        "output_uri": "s3://out/job",
        "shard_rows": 40,
        "s3_endpoint": s3["endpoint"],
    }
    first = build(parallelism=2)(**args)
    assert first.output["rows"] == 90 and first.output["shards"] == 3
    shard_files = sorted((s3["root"] / "out" / "job" / "shards").glob("*.parquet"))
    assert [p.name for p in shard_files] == [f"part-0000{i}.parquet" for i in range(3)]
    stamps = [p.stat().st_mtime_ns for p in shard_files]
    second = build(parallelism=2)(**args)
    assert second.output == first.output
    assert [p.stat().st_mtime_ns for p in shard_files] == stamps  # nothing scored again
    out = pd.concat([pd.read_parquet(p) for p in shard_files], ignore_index=True)
    assert out.text.tolist() == df.text.tolist() and set(out.status) == {"ok"}
    summary = json.loads((s3["root"] / "out" / "job" / "summary.json").read_text())
    assert summary["status"]["ok"] == 90 and summary["data"] == "s3://out/job/shards/"
