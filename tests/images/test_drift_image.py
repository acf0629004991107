"""The drift sidecar image, built for real (buildah) and run: `python -m drift` over a model
directory with its detector bound in; real binary CloudEvents posted from outside (in-domain,
then shifted); its /metrics read: no drift, then drift, the events counted; as a non-root user
writing nothing outside /tmp; no pip, compiler or test data in the image."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from sentiops.local.processes import free_port
from tests.drift.conftest import (  # noqa: F401 (corpus, detector_model: fixtures)
    REQUEST,
    RESPONSE,
    cloudevent,
    corpus,
    detector_model,
    predictions,
    shifted_texts,
    v1_pair,
)

from . import oci

pytestmark = [pytest.mark.integration, pytest.mark.images]


@pytest.fixture(scope="module")
def built() -> str:
    oci.build("drift")
    return oci.image("drift")


def _sample(url: str, name: str, **labels: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_config_runs_as_non_root_with_home_in_tmp(built: str) -> None:
    cfg = oci.config("drift")
    assert cfg["User"] == "10001:10001"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["HOME"] == "/tmp" and env["PIP_NO_INDEX"] == "1"
    assert cfg["Cmd"] == ["python", "-m", "drift"]


def test_sidecar_reports_drift_from_outside_the_container(
    built: str,
    detector_model: Path,  # noqa: F811
    corpus,  # noqa: ANN001, F811
    tmp_path: Path,
) -> None:
    model = tmp_path / "model"
    import shutil

    shutil.copytree(detector_model, model)
    for p in [model, *model.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)  # readable by the image's user
    port = free_port()
    cmd = [
        "python",
        "-m",
        "drift",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--detector",
        "/mnt/models",
        "--store",
        "/tmp/store",
        "--window-size",
        "60",
        "--min-window",
        "30",
        "--model-version",
        "7",
    ]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "sidecar.log"
    with oci.container("drift") as c:
        since = time.time()
        with c.serve(cmd, {model: "/mnt/models"}, log) as proc:
            oci.wait_port(port, proc, log, timeout=300)
            deadline = time.monotonic() + 240
            while httpx.get(f"{url}/readyz", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(1)
            texts = {"in-domain": corpus.traffic[:60], "shifted": shifted_texts(60)}
            with httpx.Client(timeout=10) as client:
                n = 0
                for kind, batch in texts.items():
                    probs = predictions(detector_model, batch)
                    for text, p in zip(batch, probs, strict=True):
                        n += 1
                        req, resp = v1_pair([text], [p])
                        for ce_type, body in ((REQUEST, req), (RESPONSE, resp)):
                            headers, data = cloudevent(
                                ce_type, f"img-{n}", json.dumps(body).encode(), "7"
                            )
                            r = client.post(url + "/", headers=headers, content=data)
                            assert r.status_code == 202, r.text
                    deadline = time.monotonic() + 240
                    result = "no_drift" if kind == "in-domain" else "drift"
                    while (
                        _sample(
                            url, "sentiops_drift_windows_total", model_version="7", result=result
                        )
                        < 1
                    ):
                        assert time.monotonic() < deadline, log.read_text()[-3000:]
                        time.sleep(1)
            r = httpx.post(url + "/", content=b"not an event", headers={"ce-id": "x"}, timeout=10)
            assert 400 <= r.status_code < 500
            assert _sample(url, "sentiops_drift_events_total", outcome="accepted") >= 240
        assert c.changed_outside_tmp(since) == []
        assert c.run(["id", "-u"]).stdout.strip() == "10001"


def test_image_holds_no_pip_compiler_or_test_data(built: str) -> None:
    found = oci.hygiene("drift", "drift", python="python")
    assert not found["pip"] and found["compilers"] == [] and found["test_data"] == []
    assert found["pydantic"] == "1"  # alibi-detect 0.11.4
    assert found["stacks"] == ["kfp", "alibi_detect"]  # kfp submits retraining runs
