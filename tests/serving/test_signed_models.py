"""A real predictor (`python -m serving`) on loopback that holds only the public key: the model
signed with the private key serves, a forged one (new weights, the manifest rewritten to match,
signed with another key) never becomes ready and says why on every probe."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from sentiops.local.processes import wait_http
from sentiops.local.stack import Predictor
from sentiops.models import modeldir
from sentiops.security import signing
from tests.security.test_signing import forge, openssl_key_id, openssl_pair
from tests.serving.conftest import tfidf_dir

pytestmark = pytest.mark.integration

V1 = "/v1/models/sentiment:predict"


def test_a_forged_model_never_becomes_ready(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    trusted = tfidf_dir(tmp_path / "trusted")  # signed with the session's signing key
    public = tmp_path / "verify.pub"
    key = signing.signing_key()
    public.write_bytes(signing.public_pem(key.public))
    forged = tmp_path / "forged"
    shutil.copytree(trusted, forged)
    forge(forged)
    forger_key, forger_pub = openssl_pair(tmp_path / "forger")
    modeldir.sign(forged, signing.load_signing_key(forger_key))
    # the predictor's environment on a cluster: the public key, no private key
    monkeypatch.setenv(signing.VERIFY_KEY_ENV, str(public))
    monkeypatch.delenv(signing.SIGNING_KEY_ENV)

    good = Predictor(trusted, "1", tmp_path / "good").start(timeout=120)
    try:
        r = httpx.post(good.url + V1, json={"instances": ["the app was great and good"]})
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "positive"
    finally:
        good.stop()

    bad = Predictor(forged, "2", tmp_path / "bad")
    bad.launch()  # the process stays up and answers its probes
    why = (
        f"is signed by key {openssl_key_id(forger_pub)[:16]}, not by key "
        f"{key.key_id[:16]} ({signing.VERIFY_KEY_ENV}={public})"
    )
    try:
        wait_http(f"{bad.url}/v2/health/live", bad.process, 60, "predictor v2 live")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # never ready, for as long as we look
            for path in ("/v2/models/sentiment/ready", "/v2/health/ready"):
                r = httpx.get(bad.url + path)
                assert r.status_code == 503 and why in r.json()["error"], (path, r.text)
            time.sleep(1)
        r = httpx.post(bad.url + V1, json={"instances": ["the app was great and good"]})
        assert r.status_code == 503 and why in r.json()["error"]
        assert bad.process is not None
        log = bad.process.log.read_text()
        assert "NOT ready" in log and why in log and "Traceback" not in log
        assert "PRIVATE KEY" not in log and "BEGIN" not in log  # no key material logged
    finally:
        bad.stop()
