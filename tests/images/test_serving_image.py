"""The predictor image, built for real (buildah) and run: `python -m serving` over a model
directory bound in at /mnt/models, as the chart's InferenceService runs it; spoken to from
outside the container (v2 BYTES inference, metadata); as a non-root user writing nothing
outside /tmp; no pip, compiler or test data in the image."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from sentiops.local.processes import free_port
from sentiops.models import load_model
from tests.conftest import train_transformer
from tests.serving.conftest import tfidf_dir

from . import oci

pytestmark = [pytest.mark.integration, pytest.mark.images]


@pytest.fixture(scope="module")
def built() -> str:
    oci.build("serving")
    return oci.image("serving")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One model of each type we train; the transformer packaged in its ONNX serving form."""
    root = tmp_path_factory.mktemp("image-models")
    out = {
        "tfidf-logreg": tfidf_dir(root / "tfidf"),
        "transformer": train_transformer(root / "t", "tiny-distilbert", epochs=1),
    }
    for d in out.values():
        for p in [d, *d.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)  # readable by the image's user
    return out


def test_config_runs_as_non_root_with_home_in_tmp(built: str) -> None:
    cfg = oci.config("serving")
    assert cfg["User"] == "10001:10001"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["HOME"] == "/tmp" and env["PIP_NO_INDEX"] == "1"
    assert cfg["Entrypoint"] == ["python3", "-m", "serving"]
    assert "--model_dir" in cfg["Cmd"] and "/mnt/models" in cfg["Cmd"]


@pytest.mark.parametrize("model_type", ["tfidf-logreg", "transformer"])
def test_predictor_answers_v2_from_outside_the_container(
    built: str, models: dict[str, Path], model_type: str, tmp_path: Path
) -> None:
    model = models[model_type]
    version = load_model(model).version
    http, grpc = free_port(), free_port()
    cmd = [
        "python3",
        "-m",
        "serving",
        "--model_name",
        "sentiment",
        "--model_dir",
        "/mnt/models",
        "--http_port",
        str(http),
        "--grpc_port",
        str(grpc),
    ]
    url = f"http://127.0.0.1:{http}"
    with oci.container("serving") as c:
        since = time.time()
        started = time.monotonic()
        with c.serve(
            cmd,
            {model: "/mnt/models"},
            tmp_path / "server.log",
            env={"SENTIOPS_MODEL_VERSION": version},
        ) as proc:
            oci.wait_port(http, proc, tmp_path / "server.log", timeout=240)
            deadline = time.monotonic() + 120
            while httpx.get(f"{url}/v2/models/sentiment/ready").status_code != 200:
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
                time.sleep(0.3)
            cold_start = time.monotonic() - started
            body = {
                "id": "img-1",
                "inputs": [
                    {
                        "name": "text",
                        "datatype": "BYTES",
                        "shape": [2],
                        "data": ["what a wonderful day", "this is terrible"],
                    }
                ],
            }
            r = httpx.post(f"{url}/v2/models/sentiment/infer", json=body, timeout=30)
            assert r.status_code == 200, r.text
            out = {o["name"]: o for o in r.json()["outputs"]}
            assert r.json()["id"] == "img-1" and len(out["label"]["data"]) == 2
            assert out["probabilities"]["shape"] == [2, 3]
            meta = httpx.get(f"{url}/v2/models/sentiment").json()
            assert meta["versions"] == [version] and meta["parameters"]["labels"] == [
                "negative",
                "neutral",
                "positive",
            ]
            assert "sentiops_predictions_total" in httpx.get(f"{url}/metrics").text
        assert c.changed_outside_tmp(since) == []
    print(f"{model_type}: cold start to ready {cold_start:.1f}s")  # noqa: T201 (shown with -s)


def test_image_holds_no_pip_compiler_or_test_data(built: str) -> None:
    found = oci.hygiene("serving", "serving")
    assert not found["pip"] and found["compilers"] == [] and found["test_data"] == []
    assert found["stacks"] == ["kserve"]  # only the serve extra: no pipeline, training or drift
