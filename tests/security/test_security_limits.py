"""Units of the limits every server holds (no server needed): JSON nesting, log lines, the
evaluation sample's key, the inference log's byte bound, which model versions the drift
sidecar takes, and the sidecar's event ids."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from drift.events import BadEvent, Joiner, parse
from drift.versions import VersionGate
from sentiops.errors import ConfigError, InvalidInput
from sentiops.security.limits import escape_control, json_body, json_depth, safe_log
from sentiops.security.secrets import SampleKey, create_secret, read_secret
from tests.drift.conftest import cloudevent

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
PROBS = {"negative": 0.1, "neutral": 0.2, "positive": 0.7}


# ------------------------------------------------------------------------------ JSON
def test_json_depth_counts_nesting_but_not_brackets_in_strings() -> None:
    assert json_depth(b'{"instances": ["a [[[ {{ b", "c"]}') == 2
    assert json_depth(b'"just a string \\" [["') == 0
    assert json_depth(b"[" * 40 + b"]" * 40) == 40
    assert json_body(b'{"a": [1, [2]]}') == {"a": [1, [2]]}
    with pytest.raises(InvalidInput, match="nests 33 levels deep; the limit is 32"):
        json_body(b"[" * 33 + b"]" * 33)
    with pytest.raises(InvalidInput, match="nests 200000 levels"):  # no RecursionError
        json_body("[" * 200_000)
    with pytest.raises(InvalidInput, match="not JSON"):
        json_body(b"{nope")


# ------------------------------------------------------------------------------ logs
def test_a_value_with_a_newline_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    assert escape_control("a\nb\r\x1b[31m\u2028") == "a\\x0ab\\x0d\\x1b[31m\\u2028"
    safe_log()
    with caplog.at_level(logging.INFO):
        logging.getLogger("sentiops.test").warning(
            "bad event: %s", "x\n2026-12-05 INFO sentiops.drift.retrain: retraining triggered"
        )
    (record,) = [r for r in caplog.records if r.name == "sentiops.test"]
    assert "\n" not in record.getMessage() and "\\x0a2026" in record.getMessage()


# ------------------------------------------------------------------------------ the sample
def test_the_sample_key_is_secret_uniform_and_shared_by_a_file(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    ids = [f"{n:032x}" for n in range(4000)]
    a = SampleKey(b"a" * 32, rate=0.1)
    b = SampleKey(b"b" * 32, rate=0.1)
    in_a = {i for i in ids if a.in_sample(i)}
    in_b = {i for i in ids if b.in_sample(i)}
    assert 320 < len(in_a) < 480 and 320 < len(in_b) < 480  # about a tenth
    assert len(in_a & in_b) < 80  # another secret, another sample (independent: ~40)
    assert "a" * 32 not in repr(a)
    # one installation: every process reads the same file, made once
    monkeypatch.delenv("SENTIOPS_SAMPLE_SECRET_FILE", raising=False)
    home = tmp_path / "home"
    first = read_secret("SENTIOPS_SAMPLE_SECRET_FILE", "eval-sample.key", home)
    assert not create_secret(home / "secrets" / "eval-sample.key")
    assert read_secret("SENTIOPS_SAMPLE_SECRET_FILE", "eval-sample.key", home) == first
    assert (home / "secrets" / "eval-sample.key").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("SENTIOPS_SAMPLE_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="SENTIOPS_SAMPLE_SECRET_FILE=.*does not name"):
        SampleKey.from_env()
    (tmp_path / "short").write_text("abc")
    monkeypatch.setenv("SENTIOPS_SAMPLE_SECRET_FILE", str(tmp_path / "short"))
    with pytest.raises(ConfigError, match="shorter than 16 bytes"):
        SampleKey.from_env()


# ------------------------------------------------------------------------------ inference log
def test_the_inference_log_is_bounded_in_bytes_and_logs_only_answered_requests() -> None:
    from serving.logger import LoggerMiddleware, Sender

    sender = Sender("http://127.0.0.1:9/", max_bytes=1000)  # never started: nothing drains
    assert sender.offer({}, b"x" * 600) and not sender.offer({}, b"y" * 600)
    assert sender.offer({}, b"z" * 400) and sender.queued_bytes == 1000

    class Model:
        name, version = "sentiment", "1"

    async def app(status: int, scope: dict, receive, send) -> None:  # noqa: ANN001
        await receive()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def call(status: int) -> None:
        logged = LoggerMiddleware(
            lambda s, r, w: app(status, s, r, w), Model(), sender, "all", "default"
        )
        sent: list = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b'{"instances": ["hi"]}'}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "path": "/v1/models/sentiment:predict",
            "headers": [(b"x-request-id", b"abc")],
        }
        await logged(scope, receive, send)

    sender = Sender("http://127.0.0.1:9/")
    asyncio.run(call(400))
    assert sender.queue.qsize() == 0  # refused: no event at all
    asyncio.run(call(200))
    assert sender.queue.qsize() == 2  # request and response


# ------------------------------------------------------------------------------ the sidecar
def _event(kind: str, eid: str, body: dict, version: str | None = None) -> object:
    return parse(*cloudevent(kind, eid, json.dumps(body).encode(), version))


def test_a_prediction_is_logged_under_the_id_the_predictor_issued() -> None:
    """KServe's agent makes the ce-id; the predictor's answer names the prediction (v1 `id`,
    v2 `parameters.prediction_id`): that is the id labels use."""
    joiner = Joiner()
    joiner.add(_event(REQUEST, "agent-1", {"instances": ["a", "b"]}))
    (p0, p1) = joiner.add(
        _event(
            RESPONSE,
            "agent-1",
            {
                "id": "f" * 32,
                "client_request_id": "order-42",
                "predictions": [{"label": "positive", "probabilities": PROBS}] * 2,
            },
        )
    )
    assert (p0.id, p1.id, p0.client_id) == ("f" * 32 + ":0", "f" * 32 + ":1", "order-42")
    joiner.add(
        _event(
            REQUEST,
            "agent-2",
            {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["c"]}]},
        )
    )
    (v2,) = joiner.add(
        _event(
            RESPONSE,
            "agent-2",
            {
                "id": "order-43",
                "model_version": "1",
                "parameters": {"prediction_id": "e" * 32, "client_request_id": "order-43"},
                "outputs": [
                    {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["neutral"]},
                    {
                        "name": "probabilities",
                        "datatype": "FP32",
                        "shape": [1, 3],
                        "data": [0.2, 0.6, 0.2],
                    },
                ],
            },
        )
    )
    assert (v2.id, v2.client_id) == ("e" * 32, "order-43")  # not the echoed client id


def test_a_pair_is_never_guessed_and_bad_ids_are_refused() -> None:
    joiner = Joiner()
    joiner.add(_event(REQUEST, "dup", {"instances": ["mine"]}))
    with pytest.raises(BadEvent, match="two requests pending under one id") as info:
        joiner.add(_event(REQUEST, "dup", {"instances": ["the attacker's"]}))
    assert info.value.reason == "duplicate_id" and not joiner.pending  # both dropped
    answer = {"predictions": [{"label": "positive", "probabilities": PROBS}]}
    assert joiner.add(_event(RESPONSE, "dup", answer)) == []  # waits for a request: none
    with pytest.raises(BadEvent) as info:
        _event(REQUEST, "x\nINFO forged", {"instances": ["a"]})
    assert info.value.reason == "bad_id"
    with pytest.raises(BadEvent) as info:
        _event(RESPONSE, "ok-1", {**answer, "id": "has\nnewline"})
    assert info.value.reason == "bad_id"
    with pytest.raises(BadEvent) as info:
        parse(*cloudevent(REQUEST, "deep", b"[" * 5000 + b"]" * 5000, None))
    assert info.value.reason == "too_deep"


def test_the_sidecar_takes_events_of_known_model_versions_only() -> None:
    in_store = {"1", "2"}
    asked: list[str] = []

    def exists(version: str) -> bool:
        asked.append(version)
        return version in in_store

    gate = VersionGate(exists, max_versions=3)
    assert gate.check("1") == "" and gate.cached("1") == ""
    assert "not in the store" in gate.check("999")
    assert "not in the store" in (gate.cached("999") or "")  # a miss is remembered a while
    assert asked == ["1", "999"]
    in_store.add("999")
    gate.misses["999"] -= 60  # its time is up: asked again, found
    assert gate.check("999") == ""
    assert gate.check("2") == ""  # the third version
    in_store.add("3")
    assert "at most 3 model versions" in gate.check("3")  # a fourth: refused, however real
    assert "not 1-64 characters" in (gate.cached("a" * 65) or "")
    fixed = VersionGate(None, max_versions=2)  # one detector in the predictor's pod
    assert fixed.check("7") == "" and fixed.check("8") == ""
    assert "at most 2 model versions" in fixed.check("invented-1")
