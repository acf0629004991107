"""The training pipeline: compiled YAML (fresh, loads back, condition, images, secrets, caching)
and local end-to-end runs with kfp.local's SubprocessRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from kfp import components as kfp_components
from typer.testing import CliRunner

from sentiops.cli import pipeline as pipeline_cli
from sentiops.errors import SentiOpsError
from sentiops.models import load_model
from sentiops.pipeline import run as pipeline
from sentiops.pipeline.kubeflow import components
from sentiops.registry import lifecycle as registry
from sentiops.registry import tracking
from sentiops.store import storage
from tests.conftest import gate_and_pipeline_app, make_frame

CONDITION = "inputs.parameter_values['pipelinechannel--gate-Output'] == true"


def _docs(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


@pytest.fixture
def cli() -> typer.Typer:
    return gate_and_pipeline_app()


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "d.csv"
    make_frame(60).to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------ compiled YAML
def test_compiled_yaml_is_fresh(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(components.IMAGE_ENV, raising=False)
    fresh = pipeline.compile_pipeline(tmp_path / "sentiops.yaml")
    assert _docs(fresh) == _docs(pipeline.COMPILED), (
        f"{pipeline.COMPILED} is stale: run `make pipeline` and commit it"
    )


def test_compiled_yaml_loads_back_with_condition_images_and_secrets() -> None:
    spec, platform = _docs(pipeline.COMPILED)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"ingest", "validate", "split", "train", "evaluate", "gate", "condition-1"}
    branch = tasks["condition-1"]
    assert branch["triggerPolicy"]["condition"] == CONDITION
    approved = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert set(approved) == {"register", "condition-2"}
    # the canary rollout runs after register, only on a cluster (rollout == "kserve")
    assert approved["condition-2"]["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--rollout'] == 'kserve'"
    )
    assert set(spec["components"]["comp-condition-2"]["dag"]["tasks"]) == {"rollout"}
    # every step runs from the component image, with nothing pip-installed at run time
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) == 8
    for name, ex in executors.items():
        assert ex["container"]["image"] == components.DEFAULT_IMAGE, name
        assert "pip install" not in " ".join(ex["container"]["command"]), name
    # caching off for the training steps, on for the pure data steps
    for name in ("ingest", "train", "evaluate", "gate"):
        assert not tasks[name].get("cachingOptions", {}).get("enableCache"), name
    assert tasks["validate"]["cachingOptions"]["enableCache"] is True
    # S3 credentials from the Secret on the cluster
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(k8s) == {"exec-ingest", "exec-train", "exec-gate", "exec-register"}
    for cfg in k8s.values():
        (secret,) = cfg["secretAsEnv"]
        assert secret["secretName"] == "sentiops-s3"
        assert {k["envVar"] for k in secret["keyToEnv"]} == {
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        }
    # the model signing key as a volume, into the one step that writes a model
    assert [name for name, cfg in k8s.items() if cfg.get("secretAsVolume")] == ["exec-train"]
    (volume,) = k8s["exec-train"]["secretAsVolume"]
    assert volume["secretName"] == "sentiops-model-signing" and volume["optional"] is False
    assert volume["mountPath"] == "/var/run/sentiops/model-signing"
    # and KFP itself reads it back as a component
    loaded = kfp_components.load_component_from_file(str(pipeline.COMPILED))
    assert loaded.name == "sentiops-training"
    assert {
        "datasets",
        "model_type",
        "base_model",
        "hyperparameters",
        "gate",
        "model_store",
        "s3_endpoint",
        "mlflow_tracking_uri",
    } <= set(loaded.component_spec.inputs)


def test_compile_with_another_image(tmp_path: Path, cli) -> None:
    out = tmp_path / "p.yaml"
    res = CliRunner().invoke(
        cli,
        [
            "pipeline",
            "compile",
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


# -------------------------------------------------------------------------------- CLI checks
def test_run_needs_local_and_checks_thresholds(cli) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["pipeline", "run"])
    assert res.exit_code == 2 and "pipeline submit --host" in res.output
    res = runner.invoke(cli, ["pipeline", "run", "--local", "--confidence", "1.5"])
    assert res.exit_code == 2 and "--confidence" in res.output
    res = runner.invoke(cli, ["pipeline", "run", "--local", "--hyperparameters", "{epochs"])
    assert res.exit_code == 2 and "not JSON" in res.output


def test_local_arguments_use_this_machine(sentiops_home: Path) -> None:
    args = pipeline.local_arguments(datasets=["x.csv"], model_type=None)
    assert args["mlflow_tracking_uri"].startswith("sqlite:///")
    assert args["model_store"] == str((sentiops_home / "store").resolve())
    assert args["datasets"] == ["x.csv"] and "model_type" not in args


# --------------------------------------------------------------------------- local end to end
def test_local_run_failure_names_the_cause(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nfine,positive\n,negative\n")
    with pytest.raises(SentiOpsError) as info:
        pipeline.run_local(pipeline.local_arguments(datasets=[str(bad)]))
    assert "validate" in info.value.message and "empty_text" in info.value.message
    assert "task logs" in info.value.hint


def _run(cli, *args: str) -> dict:
    res = CliRunner().invoke(
        cli,
        [
            "pipeline",
            "run",
            "--local",
            "--n-resamples",
            "1000",
            "--model-store",
            "s3://sentiops",
            *args,
        ],
    )
    assert res.exit_code == 0, res.output
    out = Path(args[args.index("--output-json") + 1])
    return {"decision": json.loads(out.read_text()), "output": res.output}


@pytest.mark.integration
def test_pipeline_run_local_twice_with_real_s3(tmp_path: Path, csv: Path, cli, s3) -> None:
    """`sentiops pipeline run --local` end to end, twice: a TF-IDF first champion pushed to a
    real S3 server, then a tiny DistilBERT challenger gated against it from the registry."""
    first = _run(
        cli,
        "--data",
        str(csv),
        "--model-type",
        "tfidf-logreg",
        "--champion",
        "none",
        "--output-json",
        str(tmp_path / "first.json"),
    )
    decision = first["decision"]
    assert decision["approved"] is True and decision["champion"] is None
    assert "as the candidate: s3://sentiops/models/sentiment/1/" in first["output"]
    assert "v1 promoted candidate -> champion" in first["output"]
    keys = set(storage.S3Store().list_keys("s3://sentiops/models/sentiment/1/"))
    back = load_model(
        storage.get_dir("s3://sentiops/models/sentiment/1/", tmp_path / "back")
    )  # checksums verified
    pushed = [*back.manifest["files"], "model.json", "signature.json"]
    assert keys == {f"models/sentiment/1/{f}" for f in pushed}
    assert back.version == decision["challenger"]["version"]

    second = _run(
        cli,
        "--data",
        str(csv),
        "--model-type",
        "transformer",
        "--base-model",
        "tiny-distilbert",
        "--hyperparameters",
        '{"epochs": 2, "lr": 3e-3, "batch_size": 16, "max_length": 32}',
        "--output-json",
        str(tmp_path / "second.json"),
    )
    decision = second["decision"]
    assert decision["challenger"]["model_type"] == "transformer"
    assert decision["challenger"]["registry_version"] == "2"
    assert decision["champion"]["registry_version"] == "1"  # from the registry alias
    assert decision["champion"]["version"] == back.version
    assert decision["dataset"]["version"] and decision["bootstrap"]["n_resamples"] == 1000
    pushed = list(storage.S3Store().list_keys("s3://sentiops/models/sentiment/2/"))
    assert bool(pushed) == decision["approved"]
    tracking.configure()
    champion = registry.version_of(registry.CHAMPION)
    assert champion == ("2" if decision["approved"] else "1")
    assert registry.version_of(registry.PREVIOUS) == ("1" if decision["approved"] else None)
    assert registry.version_of(registry.CANDIDATE) is None  # promoted or never approved


def test_champion_challenger_is_two_local_runs(monkeypatch, cli) -> None:
    """`sentiops pipeline demo` (what `make run` calls): baseline first, then transformer."""
    calls: list[dict] = []

    def fake_run(args, root=None, image=None, verbose=False, promote=True):  # noqa: ANN001, ANN202
        calls.append(args)
        record = {
            "approved": True,
            "delta_macro_f1": 0.0,
            "reasons": ["ok"],
            "checks": [{"name": "min_macro_f1", "passed": True, "message": "ok"}],
            "challenger": {"model_type": args["model_type"], "version": "v"},
            "champion": None,
        }
        return pipeline.LocalRun(Path("/runs/x"), record, "s3://b/models/sentiment/1/")

    served: list[str] = []
    monkeypatch.setattr(pipeline, "run_local", fake_run)
    monkeypatch.setattr(pipeline_cli, "serve_round_trip", served.append)
    res = CliRunner().invoke(
        cli, ["pipeline", "demo", "--data", "d.csv", "--base-model", "tiny-distilbert"]
    )
    assert res.exit_code == 0, res.output
    assert served == ["s3://b/models/sentiment/1/"]  # the champion, served once at the end
    assert [c["model_type"] for c in calls] == ["tfidf-logreg", "transformer"]
    assert [c["champion"] for c in calls] == ["none", ""]
    assert calls[1]["base_model"] == "tiny-distilbert" and calls[1]["hyperparameters"]["epochs"]
    assert all(c["datasets"] == ["d.csv"] for c in calls)
    assert "run 2: transformer vs champion" in res.output


def test_gate_thresholds_travel_as_one_validated_dict(cli, monkeypatch) -> None:
    """GateConfig is the one place the thresholds are defined: the pipeline's `gate` default is
    its dump, the component takes the dict and validates it, the CLI options build it."""
    import inspect

    from sentiops.params import GateConfig
    from sentiops.pipeline.kubeflow.components.gate import gate as gate_component

    root = _docs(pipeline.COMPILED)[0]["root"]["inputDefinitions"]["parameters"]
    assert root["gate"]["defaultValue"] == GateConfig().model_dump()
    params = inspect.signature(gate_component).parameters
    assert params["gate"].default is inspect.Parameter.empty
    assert not {"min_delta", "confidence", "seed"} & set(params)
    args = pipeline_arguments_from_cli(cli, monkeypatch, ["--min-delta", "0.02"])
    assert args["gate"] == GateConfig(min_delta=0.02).model_dump()
    assert "gate" not in pipeline_arguments_from_cli(cli, monkeypatch, [])  # the pipeline's


def pipeline_arguments_from_cli(cli, monkeypatch, argv: list[str]) -> dict:
    """The arguments `sentiops pipeline run --local ARGV` runs the pipeline with."""
    seen: dict = {}

    def run_local(args, *_, **__):
        seen.update(args)
        raise SentiOpsError("stop here")

    monkeypatch.setattr(pipeline, "run_local", run_local)
    res = CliRunner().invoke(cli, ["pipeline", "run", "--local", *argv])
    assert "stop here" in res.output, res.output
    return seen


def test_wheel_ships_the_pipeline_and_compiles_outside_the_checkout(tmp_path: Path) -> None:
    """`pip wheel --no-deps .` holds the components, the pipeline and the compiled YAML, and
    `sentiops pipeline compile` works from the installed wheel in another directory."""
    import shutil
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[2]
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    src = tmp_path / "src"
    shutil.copytree(
        root / "sentiops", src / "sentiops", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(src),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("sentiops-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "sentiops/pipeline/kubeflow/training.py",
        "sentiops/pipeline/kubeflow/components/gate.py",
        "sentiops/pipeline/kubeflow/compiled/sentiops.yaml",
    } <= names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = (
        "import sys, sentiops; print(sentiops.__file__); from sentiops.cli.main import app; "
        "sys.argv = ['sentiops', 'pipeline', 'compile', '--output', 'p.yaml']; app()"
    )
    # -S: no site-packages, so neither the checkout's editable install nor anything else
    # can stand in for the wheel; the wheel's dependencies come from the venv's site-packages
    import sysconfig

    deps = sysconfig.get_paths()["purelib"]
    env = {"PYTHONPATH": f"{site}:{deps}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith(str(site)), res.stdout
    assert _docs(work / "p.yaml")[0]["pipelineInfo"]["name"] == "sentiops-training"
