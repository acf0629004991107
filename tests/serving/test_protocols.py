"""The predictor over real sockets, spoken to by independent clients: plain HTTP, Triton's
HTTP and gRPC clients (unmodified), and KServe's own REST and gRPC clients."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from sentiops.local.stack import Predictor

pytestmark = pytest.mark.integration
LABELS = ["negative", "neutral", "positive"]
TEXTS = ["the service was great and wonderful", "the coffee was awful and terrible"]


def test_v1_predict(server: Predictor) -> None:
    r = httpx.post(f"{server.url}/v1/models/sentiment:predict", json={"instances": TEXTS})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["label"] for p in preds] == ["positive", "negative"]
    for p in preds:
        assert set(p["probabilities"]) == set(LABELS)
        assert p["score"] == pytest.approx(max(p["probabilities"].values()))
        assert sum(p["probabilities"].values()) == pytest.approx(1.0)
        assert p["read"] == 1.0  # the whole text was read


def test_v1_and_v2_health_and_metadata(server: Predictor) -> None:
    assert httpx.get(f"{server.url}/v1/models/sentiment").json()["ready"] is True
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{server.url}/v2/models/sentiment/ready").status_code == 200
    meta = httpx.get(f"{server.url}/v2/models/sentiment").json()
    assert meta["versions"] == ["7"] and meta["parameters"]["labels"] == LABELS
    # the fixture's model was written without a calibrator: the API says its probabilities
    # are the model's own
    assert meta["parameters"]["probabilities"] == "uncalibrated"
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities", "read"]


def test_v2_rest_echoes_the_id(server: Predictor) -> None:
    body = {
        "id": "req-42",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": TEXTS}],
    }
    r = httpx.post(f"{server.url}/v2/models/sentiment/infer", json=body)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert r.json()["id"] == "req-42" and r.json()["model_version"] == "7"
    assert out["label"]["data"] == ["positive", "negative"] and out["label"]["datatype"] == "BYTES"
    assert out["probabilities"]["shape"] == [2, 3] and out["probabilities"]["datatype"] == "FP32"


def test_v2_rest_prediction_ids_are_issued_by_the_server(server: Predictor) -> None:
    """The prediction id (what a label names) is issued by the predictor — `x-request-id` and
    the answer's `parameters.prediction_id` — never the client's: the client's id (a header
    id wins over the body's) is echoed as the answer's `id` (Open Inference Protocol) and as
    `x-client-request-id`; a malformed one is neither used nor echoed."""
    body = {
        "id": "not ok!",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": TEXTS[:1]}],
    }
    r = httpx.post(f"{server.url}/v2/models/sentiment/infer", json=body)
    assert r.status_code == 200, r.text
    pid = r.headers["x-request-id"]
    assert len(pid) == 32 and r.json()["parameters"]["prediction_id"] == pid
    assert r.json()["id"] == pid and "x-client-request-id" not in r.headers
    r = httpx.post(
        f"{server.url}/v2/models/sentiment/infer",
        json={**body, "id": "body-1"},
        headers={"x-request-id": "header-1"},
    )
    assert r.json()["id"] == r.headers["x-client-request-id"] == "header-1"
    assert r.json()["parameters"] == {
        "prediction_id": r.headers["x-request-id"],
        "client_request_id": "header-1",
    }
    again = httpx.post(
        f"{server.url}/v2/models/sentiment/infer",
        json={**body, "id": "body-1"},
        headers={"x-request-id": "header-1"},
    )
    assert again.headers["x-request-id"] != r.headers["x-request-id"]


def test_tritonclient_http(server: Predictor) -> None:
    import tritonclient.http as th

    client = th.InferenceServerClient(url=f"127.0.0.1:{server.http_port}")
    assert client.is_server_live() and client.is_model_ready("sentiment")
    inp = th.InferInput("text", [2], "BYTES")
    inp.set_data_from_numpy(
        np.array([t.encode() for t in TEXTS], dtype=np.object_), binary_data=False
    )
    result = client.infer("sentiment", [inp], request_id="t-1")
    assert [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")] == [
        "positive",
        "negative",
    ]
    assert result.as_numpy("probabilities").shape == (2, 3)
    assert result.get_response()["id"] == "t-1"


TRITON_GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as tg

grpc_port, texts = sys.argv[1], json.loads(sys.argv[2])
client = tg.InferenceServerClient(url=f"127.0.0.1:{grpc_port}")
inp = tg.InferInput("text", [2], "BYTES")
inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
result = client.infer("sentiment", [inp], request_id="g-1")
print(json.dumps({"live": client.is_server_live(), "ready": client.is_model_ready("sentiment"),
                  "id": result.get_response().id,
                  "labels": [x.decode() for x in result.as_numpy("label")],
                  "shape": list(result.as_numpy("probabilities").shape)}))
"""


def _own_process(script: str, *args: str) -> str:
    """A client script in its own interpreter: KServe's and Triton's gRPC stubs define the
    same protobuf package (`inference`), and the test process has KServe's loaded."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def test_tritonclient_grpc(server: Predictor) -> None:
    import json

    out = json.loads(_own_process(TRITON_GRPC_CLIENT, str(server.grpc_port), json.dumps(TEXTS)))
    assert out == {
        "live": True,
        "ready": True,
        "id": "g-1",
        "labels": ["positive", "negative"],
        "shape": [2, 3],
    }


KSERVE_CLIENTS = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

url, grpc_port, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

async def call():
    rest = InferenceRESTClient(RESTConfig(protocol="v2"))
    req = InferRequest("sentiment", [InferInput("text", [2], "BYTES", data=texts)],
                       request_id="k-1")
    r1 = await rest.infer(url, req, model_name="sentiment")
    await rest.close()
    grpc = InferenceGRPCClient(f"127.0.0.1:{grpc_port}")
    inp = InferInput("text", [2], "BYTES")
    inp.set_data_from_numpy(np.array(texts, dtype=np.object_))
    r2 = await grpc.infer(InferRequest("sentiment", [inp], request_id="k-2"))
    await grpc.close()
    out = []
    for r in (r1, r2):
        o = {x.name: x for x in r.outputs}
        labels = [x.decode() if isinstance(x, bytes) else x for x in o["label"].as_numpy()]
        out.append({"id": r.id, "labels": labels,
                    "shape": list(o["probabilities"].as_numpy().shape)})
    print(json.dumps(out))

asyncio.run(call())
"""


def test_kserve_rest_and_grpc_clients(server: Predictor) -> None:
    """KServe's own clients (in their own process, like Triton's gRPC client)."""
    import json

    out = _own_process(KSERVE_CLIENTS, server.url, str(server.grpc_port), json.dumps(TEXTS))
    rest, grpc = json.loads(out)
    for resp, rid in ((rest, "k-1"), (grpc, "k-2")):
        assert resp == {"id": rid, "labels": ["positive", "negative"], "shape": [2, 3]}


def test_explain_returns_token_attributions(server: Predictor) -> None:
    r = httpx.post(
        f"{server.url}/v1/models/sentiment:explain", json={"instances": ["the coffee was awful"]}
    )
    assert r.status_code == 200, r.text
    (e,) = r.json()["explanations"]
    assert e["label"] == "negative" and e["method"].startswith("linear")
    tokens = {a["token"]: a["attribution"] for a in e["attributions"]}
    assert tokens["awful"] > 0  # pushes towards the predicted label


def test_metrics_by_version_label_and_size(server: Predictor) -> None:
    httpx.post(f"{server.url}/v1/models/sentiment:predict", json={"instances": TEXTS})
    text = httpx.get(f"{server.url}/metrics").text
    assert (
        'sentiops_predictions_total{label="positive",model_name="sentiment",model_version="7"}'
        in text
    )
    families = (
        "sentiops_prediction_confidence_bucket",
        "sentiops_request_duration_seconds_bucket",
        "sentiops_batch_size_bucket",
        "sentiops_input_length_chars_bucket",
        "request_predict_seconds_bucket",
    )
    for family in families:
        assert family in text, family


def test_a_new_version_exports_its_series_at_zero_before_its_first_request(
    model_dir: Path, tmp_path: Path
) -> None:
    """A canary's counters exist at 0 from the start: Prometheus' increase() never counts a
    series' first scraped value, so series born with their first request would lose the
    canary's first answers from the judge's window, unevenly label by label."""
    fresh = Predictor(model_dir, "fresh-9", tmp_path / "fresh")
    fresh.start(timeout=120)
    try:
        text = httpx.get(f"{fresh.url}/metrics").text
    finally:
        fresh.stop()
    sel = 'model_name="sentiment",model_version="fresh-9"'
    for label in ("negative", "neutral", "positive"):
        assert f'sentiops_predictions_total{{label="{label}",{sel}}} 0.0' in text, label
    assert f"sentiops_request_duration_seconds_count{{{sel}}} 0.0" in text
    assert f"sentiops_prediction_confidence_count{{{sel}}} 0.0" in text
    assert f'sentiops_request_errors_total{{{sel},reason="inference_error"}} 0.0' in text
    assert f'sentiops_feedback_total{{correct="false",{sel},sample="random"}} 0.0' in text
