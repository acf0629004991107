"""The real sidecar over HTTP: in-domain traffic is quiet, shifted traffic drifts, bad events
are counted with a 4xx, the prediction log is readable Parquet."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.drift.conftest import (
    REQUEST,
    RESPONSE,
    Corpus,
    cloudevent,
    predictions,
    shifted_texts,
)

pytestmark = pytest.mark.integration
WINDOW = ["--window-size", "40", "--min-window", "20", "--flush-seconds", "1"]


def test_in_domain_is_quiet_then_shift_drifts(
    sidecar_factory, detector_model: Path, corpus: Corpus
) -> None:
    s = sidecar_factory(detector_model, *WINDOW, "--consecutive", "5")
    s.post_texts(detector_model, corpus.traffic[:80], per_request=2)
    s.wait_for(lambda: s.windows("7", "no_drift") + s.windows("7", "drift") >= 2, what="2 windows")
    assert s.windows("7", "no_drift") == 2, s.metrics()
    assert s.sample("sentiops_drift_detected", model_version="7") == 0
    combined = s.sample("sentiops_drift_p_value", model_version="7", test="combined")
    assert combined >= 0.05

    s.post_texts(detector_model, shifted_texts(80), per_request=4)
    s.wait_for(lambda: s.windows("7", "drift") >= 2, what="2 drifting windows")
    assert s.sample("sentiops_drift_detected", model_version="7") == 1
    assert s.sample("sentiops_drift_p_value", model_version="7", test="embedding") < 0.05
    assert s.sample("sentiops_drift_consecutive_windows", model_version="7") == 2
    assert s.sample("sentiops_drift_events_total", outcome="accepted") == 2 * (40 + 20)
    status = httpx.get(s.url + "/status").json()
    assert status["versions"]["7"]["last"]["is_drift"] is True


def test_bad_events_are_4xx_and_counted(sidecar_factory, detector_model: Path) -> None:
    s = sidecar_factory(detector_model, *WINDOW)
    ok_req = json.dumps({"instances": ["a text"]}).encode()

    def post(headers: dict, body: bytes) -> httpx.Response:
        return httpx.post(s.url + "/", headers=headers, content=body)

    cases = {
        "not_cloudevent": ({"content-type": "application/json"}, ok_req),
        "unknown_type": cloudevent("com.example.other", "b1", ok_req, "7"),
        "not_json": cloudevent(REQUEST, "b2", b"{not json", "7"),
        "no_text": cloudevent(REQUEST, "b3", json.dumps({"instances": [""]}).encode(), "7"),
        "protocol": cloudevent(REQUEST, "b4", json.dumps({"rows": [1]}).encode(), "7"),
    }
    v2_floats = {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    cases["protocol_v2"] = cloudevent(REQUEST, "b5", json.dumps(v2_floats).encode(), "7")
    for reason, (headers, body) in cases.items():
        r = post(headers, body)
        assert r.status_code == 400, (reason, r.text)
        assert r.json()["reason"] == reason.removesuffix("_v2"), r.json()
        assert r.json()["error"]
    for reason in ("not_cloudevent", "unknown_type", "not_json", "no_text"):
        assert s.sample("sentiops_drift_bad_events_total", reason=reason) == 1
    assert s.sample("sentiops_drift_bad_events_total", reason="protocol") == 2
    # a response whose predictions do not match its request's texts: counted when joined
    h, b = cloudevent(REQUEST, "m1", json.dumps({"instances": ["one", "two"]}).encode(), "7")
    assert post(h, b).status_code == 202
    resp = {"predictions": [{"label": "positive", "probabilities": {"positive": 1.0}}]}
    h, b = cloudevent(RESPONSE, "m1", json.dumps(resp).encode(), "7")
    assert post(h, b).status_code == 202
    s.wait_for(
        lambda: s.sample("sentiops_drift_bad_events_total", reason="mismatch") == 1,
        30,
        "mismatch counted",
    )
    assert s.process.alive()
    assert httpx.get(s.url + "/healthz").status_code == 200


def test_prediction_log_is_parquet_by_date_and_version(
    sidecar_factory, detector_model: Path, corpus: Corpus, tmp_path: Path
) -> None:
    store = tmp_path / "plog-store"
    s = sidecar_factory(detector_model, *WINDOW, store=store)
    texts = corpus.traffic[:6]
    probs = predictions(detector_model, texts)
    s.post_pair(texts[:1], probs[:1], version="7")  # one text: id = the request id
    s.post_pair(texts[1:3], probs[1:3], version="7")  # two: <request id>:<index>
    s.post_pair(texts[3:6], probs[3:6], version="8", protocol="v2")  # version from the body
    s.wait_for(
        lambda: s.sample("sentiops_prediction_log_rows_total", outcome="written") == 6,
        30,
        "6 rows written",
    )
    parts = sorted(store.glob("predictions/date=*/model_version=*/part-*.parquet"))
    assert {p.parent.name for p in parts} == {"model_version=7", "model_version=8"}
    df = pd.concat([pd.read_parquet(p) for p in parts]).sort_values("id")
    assert list(df.columns) == [
        "id",
        "request_id",
        "index",
        "time",
        "model_name",
        "model_version",
        "text",
        "label",
        "confidence",
        "probabilities",
        "classes",
        "client_id",
        "sample",
    ]
    assert set(df["sample"]) == {"random"}  # decided by the sidecar (the suite's rate is 1)
    assert set(df.id) == {"req-1", "req-2:0", "req-2:1", "req-3:0", "req-3:1", "req-3:2"}
    assert sorted(df.text) == sorted(texts)
    row = df[df.id == "req-1"].iloc[0]
    assert list(row.classes) == ["negative", "neutral", "positive"]
    assert row.probabilities[list(row.classes).index(row.label)] == pytest.approx(row.confidence)
    assert set(df[df.model_version == "8"].id) == {"req-3:0", "req-3:1", "req-3:2"}
    assert str(df.time.dtype).startswith("datetime64")


def test_detector_per_model_version_from_the_store(
    sidecar_factory, detector_model: Path, corpus: Corpus, tmp_path: Path
) -> None:
    """Without --detector, each version's detector is its registered model directory in the
    store (config.model_uri); a pushed version without one is reported, never fatal; events of
    a version the store does not hold are refused (the review's 1,000 invented versions made
    1,000 windows, metric series, Parquet parts and error lines)."""
    import shutil

    from sentiops.config import model_uri

    store = tmp_path / "registry-store"
    shutil.copytree(detector_model, model_uri(str(store), "7"))
    no_detector = Path(model_uri(str(store), "9"))
    shutil.copytree(detector_model, no_detector)
    shutil.rmtree(no_detector / "drift")
    s = sidecar_factory(None, *WINDOW, store=store)
    s.post_texts(detector_model, corpus.traffic[:40], per_request=4, version="7")
    s.post_texts(detector_model, corpus.traffic[40:80], per_request=4, version="9")
    s.wait_for(lambda: s.windows("7", "no_drift") == 1, what="version 7 tested")
    s.wait_for(lambda: s.windows("9", "error") == 1, what="version 9 without a detector")
    assert "no drift detector for model version 9" in s.process.tail(20000)
    body = json.dumps({"instances": ["a text"]}).encode()
    for n in range(30):
        headers, data = cloudevent(REQUEST, f"inv-{n}", body, f"inv-{n}")
        r = httpx.post(s.url + "/", headers=headers, content=data)
        assert r.status_code == 400 and r.json()["reason"] == "unknown_version", r.text
        assert "not in the store" in r.json()["error"]
    assert s.sample("sentiops_drift_bad_events_total", reason="unknown_version") == 30
    assert set(httpx.get(s.url + "/status").json()["versions"]) == {"7", "9"}
    assert s.process.alive()


def test_with_a_token_file_unauthenticated_events_are_refused(
    sidecar_factory, detector_model: Path, tmp_path: Path
) -> None:
    """Events become the prediction log that labels join and retraining reads: with a token
    file, an event without a token is 401, with a wrong one 403 (counted, nothing queued,
    never a 5xx); with a valid token it is accepted."""
    from sentiops.security.auth import generate

    tokens = generate(tmp_path / "tokens", ("predictor",))
    s = sidecar_factory(
        detector_model, *WINDOW, env={"SENTIOPS_AUTH_TOKEN_FILE": str(tmp_path / "tokens")}
    )
    h, b = cloudevent(REQUEST, "t1", json.dumps({"instances": ["a text"]}).encode(), "7")
    none = httpx.post(s.url + "/", headers=h, content=b)
    assert none.status_code == 401 and none.json()["reason"] == "unauthorized"
    assert none.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(s.url + "/", headers={**h, "Authorization": "Bearer " + "w" * 30}, content=b)
    assert wrong.status_code == 403
    assert s.sample("sentiops_drift_bad_events_total", reason="unauthorized") == 2
    assert s.sample("sentiops_drift_events_total", outcome="accepted") == 0
    ok = httpx.post(
        s.url + "/", headers={**h, "Authorization": f"Bearer {tokens['predictor']}"}, content=b
    )
    assert ok.status_code == 202, ok.text


def test_a_flood_of_events_from_one_client_gets_429s(sidecar_factory, detector_model: Path) -> None:
    """--rate-limit per client address: a flood gets 429 with Retry-After (counted, never a
    5xx) while another address is still served."""
    s = sidecar_factory(detector_model, *WINDOW, "--rate-limit", "1")
    h, b = cloudevent(REQUEST, "f", json.dumps({"instances": ["a text"]}).encode(), "7")
    started = time.monotonic()
    codes = [
        httpx.post(s.url + "/", headers={**h, "ce-id": f"f{i}"}, content=b).status_code
        for i in range(30)
    ]
    elapsed = time.monotonic() - started
    # one second's burst plus 1/s over the flood's duration (a busy machine stretches it)
    assert set(codes) <= {202, 429} and 1 <= codes.count(202) <= 2 + elapsed, (codes, elapsed)
    assert s.sample("sentiops_drift_bad_events_total", reason="rate_limited") == codes.count(429)
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
        r = other.post(s.url + "/", headers={**h, "ce-id": "other"}, content=b)
    assert r.status_code == 202, r.text


def test_a_full_queue_is_a_429_with_retry_after(
    sidecar_factory, detector_model: Path, corpus: Corpus
) -> None:
    """Events arriving faster than the sidecar takes them in are the sender's pace, not a
    server fault: 429 + Retry-After saying so (counted as dropped), never a 5xx. The queue
    holds one event and the joiner is held for 2 s asking a predictor that never answers for
    the model version (the events carry none)."""
    import socket

    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        s = sidecar_factory(
            detector_model,
            *WINDOW,
            "--queue-size",
            "1",
            "--predictor-url",
            f"http://127.0.0.1:{port}",
        )
        s.post_pair(
            corpus.traffic[:1], predictions(detector_model, corpus.traffic[:1]), version=None
        )
        h, b = cloudevent(REQUEST, "q", json.dumps({"instances": ["a text"]}).encode(), None)
        answers = [
            httpx.post(s.url + "/", headers={**h, "ce-id": f"q{i}"}, content=b) for i in range(5)
        ]
    codes = [r.status_code for r in answers]
    assert codes.count(429) >= 3 and set(codes) <= {202, 429}, codes
    full = next(r for r in answers if r.status_code == 429)
    assert full.headers["retry-after"] == "1" and full.json()["reason"] == "queue_full"
    assert "faster than it takes them in" in full.json()["error"]
    assert s.sample("sentiops_drift_events_total", outcome="dropped") == codes.count(429)
    later = {**h, "ce-id": "later"}
    s.wait_for(
        lambda: httpx.post(s.url + "/", headers=later, content=b).status_code == 202,
        what="the queue drained",
    )


def test_a_body_over_the_limit_is_a_413_before_it_is_read_whole(
    sidecar_factory, detector_model: Path
) -> None:
    """A Content-Length over 8 MB is refused before its body is sent; a chunked body is read
    only up to the limit: the 413 comes while the sender is still sending."""
    import socket
    from urllib.parse import urlsplit

    from drift.server import MAX_BODY

    s = sidecar_factory(detector_model, *WINDOW)
    host, port = urlsplit(s.url).hostname, urlsplit(s.url).port
    headers, _ = cloudevent(REQUEST, "big", b"", "7")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())

    def answer(request: bytes, chunks: int = 0) -> str:
        with socket.create_connection((host, port), timeout=20) as sock:
            sock.sendall(request)
            chunk = b"x" * 65536
            for _ in range(chunks):  # never the closing chunk: the body is still open
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
        return reply.decode()

    declared = answer(
        f"POST / HTTP/1.1\r\nhost: x\r\n{head}content-length: {10 * MAX_BODY}\r\n\r\n".encode()
    )
    assert declared.startswith("HTTP/1.1 413"), declared
    assert f"{10 * MAX_BODY} bytes (Content-Length), over the limit of {MAX_BODY}" in declared
    streamed = answer(
        f"POST / HTTP/1.1\r\nhost: x\r\n{head}transfer-encoding: chunked\r\n\r\n".encode(),
        chunks=MAX_BODY // 65536 + 2,
    )
    assert streamed.startswith("HTTP/1.1 413"), streamed
    assert f"past the limit of {MAX_BODY} bytes" in streamed and "too_large" in streamed
    assert s.sample("sentiops_drift_bad_events_total", reason="too_large") == 2
    assert httpx.get(s.url + "/healthz").status_code == 200
    s.post_pair(["still served"], [{"positive": 0.9, "negative": 0.05, "neutral": 0.05}])
