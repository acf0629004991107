"""The predictor's own inference logger (`python -m serving --logger_url`) feeding the real
sidecar on loopback; and the prediction log on a real S3 server, including one that is down
at first (retried, counted, never blocking)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from sentiops.config import Settings
from sentiops.local.processes import free_port
from sentiops.local.stack import Predictor
from sentiops.store.storage import S3Store
from tests.drift.conftest import Corpus, predictions, shifted_texts
from tests.servers import start_s3

pytestmark = pytest.mark.integration


def test_predictor_logger_to_sidecar(
    sidecar_factory, detector_model: Path, corpus: Corpus, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    s = sidecar_factory(
        detector_model,
        "--window-size",
        "40",
        "--min-window",
        "20",
        "--flush-seconds",
        "1",
        store=store,
    )
    p = Predictor(detector_model, "7", tmp_path / "predictor", extra_args=[f"--logger_url={s.url}"])
    p.start(timeout=180)
    try:
        issued = []
        with httpx.Client(base_url=p.url, timeout=30) as client:
            for i in range(0, 40, 4):  # v1, in-domain
                r = client.post(
                    "/v1/models/sentiment:predict",
                    json={"instances": corpus.traffic[i : i + 4]},
                    headers={"x-request-id": f"e2e-{i}"},
                )
                assert r.status_code == 200, r.text
                issued.append(r.headers["x-request-id"])
            s.wait_for(lambda: s.windows("7", "no_drift") == 1, what="an in-domain window")
            shifted = shifted_texts(40, seed=9)
            for i in range(0, 40, 8):  # v2 (BYTES), another domain
                body = {
                    "inputs": [
                        {
                            "name": "text",
                            "datatype": "BYTES",
                            "shape": [8],
                            "data": shifted[i : i + 8],
                        }
                    ]
                }
                r = client.post("/v2/models/sentiment/infer", json=body)
                assert r.status_code == 200, r.text
            bad = client.post("/v1/models/sentiment:predict", json={"instances": [""]})
            assert bad.status_code == 400  # not logged at all: only answered requests are
        s.wait_for(lambda: s.windows("7", "drift") == 1, what="a drifting window")
        assert s.sample("sentiops_drift_detected", model_version="7") == 1
        s.wait_for(
            lambda: s.sample("sentiops_prediction_log_rows_total", outcome="written") == 80,
            30,
            "80 rows in the prediction log",
        )
        df = pd.concat(pd.read_parquet(f) for f in store.glob("predictions/**/*.parquet"))
        assert set(df.model_version) == {"7"}
        # the prediction ids the predictor issued; the client's ids kept beside them
        assert {f"{issued[0]}:{i}" for i in range(4)} <= set(df.id)
        assert set(df[df.id.str.startswith(issued[0])].client_id) == {"e2e-0"}
        assert set(df.text) == set(corpus.traffic[:40]) | set(shifted)
        assert s.sample("sentiops_drift_bad_events_total", reason="not_json") == 0
    finally:
        p.stop()


def test_prediction_log_on_s3_survives_a_store_that_is_down(
    sidecar_factory, detector_model: Path, corpus: Corpus, tmp_path: Path
) -> None:
    port, key, secret = free_port(), "driftkey", "driftsecret123"
    env = {
        "SENTIOPS_S3_ENDPOINT": f"127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "SENTIOPS_S3_RETRIES": "0",
    }
    s = sidecar_factory(
        detector_model,
        "--window-size",
        "40",
        "--min-window",
        "20",
        "--flush-seconds",
        "1",
        "--flush-rows",
        "1000",
        store="s3://drift-log",
        env=env,
    )
    texts = corpus.traffic[:10]
    probs = predictions(detector_model, texts)
    started = time.monotonic()
    for i in range(10):
        s.post_pair(texts[i : i + 1], probs[i : i + 1])
    assert time.monotonic() - started < 5  # the store being down never slows the logger
    s.wait_for(lambda: s.sample("sentiops_prediction_log_errors_total") >= 1, 30, "a failed flush")
    assert s.sample("sentiops_prediction_log_buffered_rows") == 10
    assert s.sample("sentiops_prediction_log_rows_total", outcome="written") == 0

    server = start_s3(tmp_path / "s3", port, key, secret)  # the store comes back
    try:
        s.wait_for(
            lambda: s.sample("sentiops_prediction_log_rows_total", outcome="written") == 10,
            90,
            "the buffered rows written after the store came back",
        )
        assert s.sample("sentiops_prediction_log_buffered_rows") == 0
        store = S3Store(
            Settings(s3_endpoint=f"127.0.0.1:{port}", s3_access_key=key, s3_secret_key=secret)
        )
        keys = list(store.list_keys("s3://drift-log/predictions/"))
        assert keys and all("/model_version=7/part-" in k for k in keys)
        local = tmp_path / "part.parquet"
        store.download_file(f"s3://drift-log/{keys[0]}", local)
        df = pd.read_parquet(local)
        assert len(df) == 10 and set(df.text) == set(texts)
    finally:
        server.stop()
