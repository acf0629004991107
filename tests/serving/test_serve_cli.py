"""`sentiops serve`: a model from a real S3 (downloaded, checksums verified) served on
loopback; a broken model is a clear error before any server starts."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import httpx
import pytest

from sentiops.local.processes import free_port, start_process, wait_http
from sentiops.store.storage import put_dir
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def test_serve_an_s3_model(
    model_dir: Path, tmp_path: Path, s3: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    (s3["root"] / "models").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    uri = put_dir(model_dir, "s3://models/sentiment/1")
    port = free_port()
    exe = str(Path(sys.executable).with_name("sentiops"))
    proc = start_process(
        "serve",
        [
            exe,
            "serve",
            "--model",
            uri,
            "--http-port",
            str(port),
            "--grpc-port",
            str(free_port()),
        ],
        tmp_path,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/models/sentiment/ready", proc, 120, "serve")
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/models/sentiment:predict",
            json={"instances": ["the service was great and wonderful"]},
        )
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "positive"
        assert "serving tfidf-logreg" in proc.log.read_text()
    finally:
        proc.stop()


def test_serve_refuses_a_tampered_model(model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    (bad / "label_map.json").write_text("{}")
    result = run_cli("serve", "--model", bad, "--http-port", free_port())
    assert result.returncode == 4
    assert "checksum mismatch" in result.stderr and "label_map.json" in result.stderr
