"""Bad input never costs a 5xx: every client mistake is a 4xx with {"error": ...} naming the
problem (and the limit); a schemathesis run over the server's OpenAPI finds no 5xx."""

from __future__ import annotations

import httpx
import pytest

from sentiops.errors import StackError
from sentiops.local.processes import wait_http
from sentiops.local.stack import Predictor

pytestmark = pytest.mark.integration


def _v2(data: object, shape: object = None, datatype: str = "BYTES", name: str = "text") -> dict:
    n = len(data) if isinstance(data, list) else 1
    return {"inputs": [{"name": name, "datatype": datatype, "shape": shape or [n], "data": data}]}


V1 = "/v1/models/sentiment:predict"
V2 = "/v2/models/sentiment/infer"
CASES = [
    ("v1 missing instances", V1, {"texts": ["x"]}, 'missing "instances"'),
    ("v1 empty list", V1, {"instances": []}, "empty batch"),
    ("v1 whitespace", V1, {"instances": ["ok", "   "]}, "items [1] are empty"),
    ("v1 not strings", V1, {"instances": ["ok", 3, None]}, "items [1, 2] are not strings"),
    ("v1 a string", V1, {"instances": "just text"}, '"instances" to be a list'),
    ("v1 over max batch", V1, {"instances": ["a"] * 5}, "exceeds the limit of 4"),
    ("v1 text too long", V1, {"instances": ["x" * 201]}, "longer than 200 characters"),
    ("v2 wrong datatype", V2, _v2([1, 2], datatype="INT32"), "datatype INT32"),
    ("v2 wrong input name", V2, _v2(["a"], name="sentence"), "input named 'text'"),
    ("v2 wrong shape", V2, _v2(["a", "b"], shape=[1, 2]), "shape [1, 2]"),
    ("v2 shape disagrees", V2, _v2(["a", "b"], shape=[3]), "says 3 texts but the data has 2"),
    ("v2 empty text", V2, _v2([""]), "items [0] are empty"),
    ("v2 over max batch", V2, _v2(["a"] * 5), "exceeds the limit of 4"),
]


@pytest.mark.parametrize(("what", "path", "body", "message"), CASES, ids=[c[0] for c in CASES])
def test_client_mistakes_are_4xx_naming_the_problem(
    server: Predictor, what: str, path: str, body: dict, message: str
) -> None:
    r = httpx.post(server.url + path, json=body)
    assert 400 <= r.status_code < 500, (what, r.status_code, r.text)
    assert message in r.json()["error"], r.text


def test_invalid_json_unknown_model_and_oversized_body(server: Predictor) -> None:
    r = httpx.post(
        server.url + V1, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500 and "error" in r.json() or "detail" in r.json()
    r = httpx.post(server.url + "/v1/models/nope:predict", json={"instances": ["hi"]})
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = httpx.get(server.url + "/v2/models/nope")
    assert r.status_code == 404 and "sentiment" in r.json()["error"]
    r = httpx.post(server.url + "/v2/repository/models/sentiment/unload")
    assert r.status_code == 404 and "disabled" in r.json()["error"]
    r = httpx.post(server.url + V1, json={"instances": ["x" * 100] * 30_000})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]
    # the server still serves after all of that
    r = httpx.post(server.url + V1, json={"instances": ["great"]})
    assert r.status_code == 200


def test_errors_are_counted_by_reason_and_version(server: Predictor) -> None:
    httpx.post(server.url + V1, json={"instances": []})
    metrics = httpx.get(server.url + "/metrics").text
    assert (
        'sentiops_request_errors_total{model_name="sentiment",model_version="7",'
        'reason="invalid_input"}' in metrics
    )


def test_schemathesis_finds_no_server_error(server: Predictor) -> None:
    """Property-based requests against the server's own OpenAPI (bounded)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures: list[str] = []
    for op in schema.get_all_operations():
        operation = op.ok()
        if operation.method.upper() not in ("GET", "POST"):
            continue

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case) -> None:  # noqa: ANN001
            response = case.call(base_url=server.url, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} "
                    f"{response.text[:200]}"
                )

        check()
    assert not failures, "\n".join(failures[:10])


def test_tampered_model_is_never_ready(model_dir, tmp_path) -> None:  # noqa: ANN001
    import shutil

    bad = tmp_path / "tampered"
    shutil.copytree(model_dir, bad)
    (bad / "tfidf.npz").write_bytes(b"not the weights")
    never = Predictor(bad, "9", tmp_path / "never")
    with pytest.raises(StackError, match="predictor v9 ready"):
        never.start(timeout=25)
    assert never.process is not None and not never.process.alive()  # not left behind
    p = Predictor(bad, "9", tmp_path / "run")
    p.launch()  # the process itself stays up and answers its probes
    try:
        wait_http(f"{p.url}/v2/health/live", p.process, 60, "predictor v9 live")
        for path in ("/v2/models/sentiment/ready", "/v2/health/ready", "/v1/models/sentiment"):
            r = httpx.get(p.url + path)
            assert r.status_code == 503 and "checksum mismatch" in r.json()["error"], path
        r = httpx.post(p.url + V1, json={"instances": ["hi"]})
        assert r.status_code == 503 and "tfidf.npz" in r.json()["error"]
        assert 'reason="model_not_ready"' in httpx.get(p.url + "/metrics").text
        assert p.process is not None
        log = p.process.log.read_text()
        assert "NOT ready" in log and "checksum mismatch" in log
        assert "Traceback" not in log  # probes of a broken model are answered, not crashed
    finally:
        p.stop()


def test_an_oversized_v2_body_is_a_413_before_its_id_is_read(server: Predictor) -> None:
    """A v2 body names its request in its `id`: the body limit holds before that id is read,
    so an oversized body is a 413 naming the limit, never a 5xx — with a length, and streamed
    without one: then the 413 comes as soon as the limit is passed, while the client is still
    sending (the body is not buffered to its end first) — and the server goes on serving."""
    import socket

    big = _v2(["x" * 100] * 30_000)
    big["id"] = "big-1"
    r = httpx.post(server.url + V2, json=big, timeout=60)
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"], r.text
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(
            b"POST " + V2.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b'{"id": "big-2", "inputs": [{"data": ["' + b"x" * (2**16 - 39)
        for _ in range(48):  # 3 MB of an unfinished body (no last chunk)
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:  # the server may stop reading once it has answered
                break
            chunk = b"x" * 2**16
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096) or b"\r\n\r\n"
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    r = httpx.post(server.url + V2, json=_v2(["great"]), timeout=30)
    assert r.status_code == 200, r.text
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200


DEEP = b"[" * 50_000 + b"]" * 50_000  # 100 KB, nested 50,000 levels


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        (V2, "application/json", b'{"inputs": ' + DEEP + b"}"),
        (V1, "text/plain", b'{"instances": ' + DEEP + b"}"),  # read by the model itself
        (V1, "application/json", DEEP),
        ("/v1/models/sentiment:explain", "application/json", DEEP),
        ("/v1/models/sentiment:feedback", "application/json", DEEP),
    ],
    ids=["v2 infer", "v1 text/plain", "v1 json", "explain", "feedback"],
)
def test_deeply_nested_json_is_a_400_not_a_recursion_error(
    server: Predictor, path: str, content_type: str, body: bytes
) -> None:
    """The review's 200 KB nested body gave 500 (RecursionError) on v2 /infer, v1 text/plain
    and :feedback: it is a 400 naming the nesting limit, before anything parses it."""
    r = httpx.post(
        server.url + path, content=body, headers={"content-type": content_type}, timeout=30
    )
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert "levels deep; the limit is 32" in r.json()["error"]


def test_a_client_mistake_is_one_log_line_without_a_traceback(server: Predictor) -> None:
    """KServe logs a traceback for every 400; the predictor logs one escaped line: a bad
    request costs no log volume to speak of, and a newline in it cannot forge a log line."""
    assert server.process is not None
    log = server.process.log
    before = log.read_text()
    r = httpx.post(server.url + V1, json={"instances": ["ok", 3]})  # 19 bytes of mistake
    assert r.status_code == 400
    r = httpx.post(
        server.url + V1, json={"instances": ["a\nINFO forged: retraining triggered"] * 5}
    )  # over --max_batch_size=4, echoed in the error
    assert r.status_code == 400
    new = log.read_text()[len(before) :]
    assert "Traceback" not in new and "\nINFO forged" not in new
    assert len([line for line in new.splitlines() if "400 POST" in line]) == 2


def test_explanations_never_hold_up_predictions_or_probes(model_dir, tmp_path) -> None:  # noqa: ANN001
    """`:explain` runs in threads of its own, at most two at once: a burst of explanations
    gets 429s with Retry-After beyond that (never a 5xx), and the event loop keeps answering
    health probes and predictions meanwhile."""
    import concurrent.futures

    p = Predictor(model_dir, "1", tmp_path / "p")
    p.start()
    try:
        long = " ".join(["the service was great and the coffee was awful"] * 100)
        url = f"{p.url}/v1/models/sentiment:explain"
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            burst = [
                pool.submit(httpx.post, url, json={"instances": [long] * 8}, timeout=60)
                for _ in range(12)
            ]
            probes = []
            for _ in range(10):  # while the burst is being explained
                ready = httpx.get(f"{p.url}/v2/health/ready", timeout=30).status_code
                predicted = httpx.post(
                    f"{p.url}/v1/models/sentiment:predict", json={"instances": ["fine"]}, timeout=30
                )
                probes.append(ready == predicted.status_code == 200)
            codes = [f.result().status_code for f in burst]
        assert set(codes) <= {200, 429}, codes
        assert codes.count(200) >= 2 and 429 in codes, codes
        refused = next(f.result() for f in burst if f.result().status_code == 429)
        assert refused.headers["retry-after"] == "1" and "the limit" in refused.json()["error"]
        assert all(probes)
    finally:
        p.stop()
