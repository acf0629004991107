"""The console's JSON API over a real socket (the console started by its CLI, the real
predictor, Prometheus and registry of tests/console/conftest.py): answers, and a clear 4xx
JSON error for every client mistake, a 502/503/504 naming the source when one is down, never a
traceback."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sentiops.local.processes import free_port, wait_http
from tests.console.conftest import PREDICTOR_MAX_CHARS, Stack, spawn_console

pytestmark = pytest.mark.integration


def _post(url: str, **kwargs: object) -> httpx.Response:
    return httpx.post(url + "/api/predict", timeout=30, **kwargs)  # type: ignore[arg-type]


def test_predict_gives_label_probabilities_and_attributions(stack: Stack) -> None:
    r = _post(stack.console_url, json={"text": "awful app, terrible update, i hate it"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] == "negative"
    assert set(body["probabilities"]) == {"negative", "neutral", "positive"}
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
    assert body["score"] == max(body["probabilities"].values())
    assert body["model_version"] == stack.champion
    assert body["method"] and body["attributions"]
    top = max(body["attributions"], key=lambda a: a["attribution"])
    assert top["token"] in ("awful", "terrible", "hate")
    assert len(body["request_id"]) == 32


def test_feedback_goes_to_the_predictors_feedback_api(stack: Stack) -> None:
    """A label for a prediction made through the console: stored by the predictor's feedback
    API; its refusals (duplicate 409, unknown id 404, unknown label 400) come back as they are."""
    rid = _post(stack.console_url, json={"text": "i love this phone"}).json()["request_id"]
    url = stack.console_url + "/api/feedback"
    r = httpx.post(url, json={"id": rid, "label": "positive"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    assert r.json()["by_version"] == {stack.champion: {"labels": 1, "correct": 1, "random": 1}}
    r = httpx.post(url, json={"id": rid, "label": "positive"}, timeout=30)
    assert r.status_code == 409 and "the predictor refused it" in r.json()["error"], r.text
    r = httpx.post(url, json={"id": "no-such-request", "label": "positive"}, timeout=30)
    assert r.status_code == 404, r.text
    rid2 = _post(stack.console_url, json={"text": "awful"}).json()["request_id"]
    r = httpx.post(url, json={"id": rid2, "label": "great"}, timeout=30)
    assert r.status_code == 400 and "great" in r.json()["error"], r.text
    for body, says in (
        ({"label": "positive"}, '"id"'),
        ({"id": rid2}, '"label"'),
        ({"id": "x" * 201, "label": "positive"}, '"id"'),
    ):
        r = httpx.post(url, json=body, timeout=30)
        assert r.status_code == 400 and says in r.json()["error"], (body, r.text)


@pytest.mark.parametrize(
    ("kwargs", "status", "says"),
    [
        ({"json": {"text": ""}}, 400, "empty"),
        ({"json": {"text": "  \n\t "}}, 400, "empty"),
        ({"json": {}}, 400, 'no "text"'),
        ({"json": {"text": 42}}, 400, "must be a string"),
        ({"json": ["a list"]}, 400, "JSON object"),
        (
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "not JSON",
        ),
        (
            {"content": b"\xff\xfe\x00", "headers": {"content-type": "application/json"}},
            400,
            "not JSON",
        ),
        ({"json": {"text": "a" * 5001}}, 413, "5001 characters"),
        ({"content": b"x" * 70_000, "headers": {"content-type": "application/json"}}, 413, "over"),
        ({"content": b'{"text": "hi"}'}, 415, "Content-Type: application/json"),
        (
            {"content": b'{"text": "hi"}', "headers": {"content-type": "text/plain"}},
            415,
            "not 'text/plain'",
        ),
    ],
)
def test_bad_input_is_a_clear_4xx(stack: Stack, kwargs: dict, status: int, says: str) -> None:
    r = _post(stack.console_url, **kwargs)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]


def test_other_client_mistakes(stack: Stack) -> None:
    url = stack.console_url
    r = httpx.get(url + "/api/series", params={"kind": "nope"})
    assert r.status_code == 400 and "unknown chart kind" in r.json()["error"]
    assert "drift" in r.json()["hint"]
    for minutes in ("abc", "0", "-5", "nan", "inf", "999999"):
        r = httpx.get(url + "/api/series", params={"kind": "drift", "minutes": minutes})
        assert r.status_code == 400 and "minutes" in r.json()["error"], minutes
    r = httpx.get(url + "/api/nothing-here")
    assert r.status_code == 404 and "no such page" in r.json()["error"]
    r = httpx.get(url + "/api/predict")
    assert r.status_code == 405 and "not allowed" in r.json()["error"]


def test_series_and_status(stack: Stack) -> None:
    r = httpx.get(stack.console_url + "/api/series", params={"kind": "accuracy", "minutes": 5})
    assert r.status_code == 200, r.text
    d = r.json()
    assert {s["label"] for s in d["series"]} == {f"v{stack.champion}", f"v{stack.previous}"}
    assert all(len(s["values"]) == len(d["t"]) for s in d["series"])
    r = httpx.get(stack.console_url + "/api/series", params={"kind": "estimate", "minutes": 5})
    assert r.status_code == 200, r.text
    labels = {s["label"] for s in r.json()["series"]}
    for v in (stack.champion, stack.previous):  # the estimate, its interval, beside realized
        assert {f"v{v} estimated", f"v{v} low", f"v{v} high"} <= labels, labels
    assert f"v{stack.previous} realized" in labels
    s = httpx.get(stack.console_url + "/api/status", timeout=60).json()
    assert all(section["ok"] for section in s.values()), s
    aliases = {a["alias"]: a for a in s["registry"]["data"]["aliases"]}
    assert aliases["champion"]["version"] == stack.champion
    assert aliases["champion"]["gate"] == "approved"
    versions = {v["version"]: v for v in s["registry"]["data"]["versions"]}
    assert versions[stack.rejected]["stage"] == "rejected"
    assert "error_rate" in versions[stack.rejected]["reason"]
    assert s["rollout"]["data"]["last"]["decision"] == "promoted"


def test_predictor_refusals_pass_through_as_4xx(stack: Stack) -> None:
    """The stack's predictor accepts fewer characters than the console (--max_chars): its
    400 reaches the client as a 400 with the predictor's reason."""
    r = _post(stack.console_url, json={"text": "good " * (PREDICTOR_MAX_CHARS // 5 + 10)})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("the predictor refused the text")
    assert str(PREDICTOR_MAX_CHARS) in r.json()["error"]


def test_sources_down_are_named_not_crashed(stack: Stack, tmp_path: Path) -> None:
    """A console whose predictor and Prometheus are down answers with the reason: 502 for an
    unreachable predictor, 503 for no predictor or no Prometheus; /api/status still answers
    with each section's "unavailable: why"."""
    dead = f"http://127.0.0.1:{free_port()}"
    down, down_url = spawn_console(
        stack.home, tmp_path, "--predictor-url", dead, "--prometheus-url", dead
    )
    bare, bare_url = spawn_console(stack.home, tmp_path)
    try:
        wait_http(down_url + "/healthz", down, 60, "console ready")
        wait_http(bare_url + "/healthz", bare, 60, "console ready")
        url = down_url
        r = _post(url, json={"text": "hello"})
        assert r.status_code == 502 and "unreachable" in r.json()["error"], r.text
        assert "--predictor-url" in r.json()["hint"]
        r = httpx.get(url + "/api/series", params={"kind": "drift"})
        assert r.status_code == 503 and "unreachable" in r.json()["error"], r.text
        s = httpx.get(url + "/api/status", timeout=60)
        assert s.status_code == 200
        sections = s.json()
        assert sections["registry"]["ok"]  # the registry is still there
        for name in ("traffic", "drift", "live_accuracy"):
            assert sections[name]["error"].startswith("unavailable: Prometheus at"), name
        assert _post(url, json={"text": ""}).status_code == 400  # validated before the call

        url = bare_url
        r = _post(url, json={"text": "hello"})
        assert r.status_code == 503 and "no predictor configured" in r.json()["error"]
        r = httpx.get(url + "/api/series", params={"kind": "traffic"})
        assert r.status_code == 503 and "no Prometheus configured" in r.json()["error"]
        assert httpx.get(url + "/api/config").json()["mlflow_url"] is None
        r = httpx.post(url + "/api/feedback", json={"id": "abc", "label": "positive"})
        assert r.status_code == 503 and "no predictor configured" in r.json()["error"]
    finally:
        down.stop()
        bare.stop()
    assert "Traceback" not in down.tail() + bare.tail()
    assert not (tmp_path / "mlflow.db").exists()  # the consoles' working directory


def test_the_token_is_passed_on_and_the_predictors_refusals_come_back_as_they_are(
    tmp_path: Path,
) -> None:
    """A predictor with reads closed and a rate limit: the console passes the page's token on
    (predict, explain, metadata, feedback); without one the predictor's 401, with a wrong one
    its 403, and over its rate its 429 + Retry-After reach the page as they are — never a 502."""
    from sentiops.local.stack import Predictor
    from sentiops.security.auth import generate
    from tests.serving.conftest import tfidf_dir

    tokens = generate(tmp_path / "tokens", ("team-a",))
    args = [
        f"--auth_token_file={tmp_path / 'tokens'}",
        "--auth_reads=true",
        f"--feedback_store={tmp_path / 'store'}",
        "--rate_limit=0.5",
        "--rate_burst=10",
    ]
    predictor = Predictor(
        tfidf_dir(tmp_path / "model"), "3", tmp_path / "predictor", extra_args=args
    )
    predictor.start(timeout=120)
    console, url = spawn_console(tmp_path / "home", tmp_path, "--predictor-url", predictor.url)
    try:
        wait_http(url + "/healthz", console, 60, "console ready")
        bearer = {"Authorization": f"Bearer {tokens['team-a']}"}
        text = {"text": "the service was great and wonderful"}
        # 3 predictor requests a prediction (predict, explain, metadata), 1 a label: 10 in all
        ok = _post(url, json=text, headers=bearer)
        assert ok.status_code == 200, ok.text
        assert ok.json()["model_version"] == "3" and ok.json()["attributions"]
        label = {"id": ok.json()["request_id"], "label": "positive"}
        r = httpx.post(url + "/api/feedback", json=label, headers=bearer, timeout=30)
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
        none = _post(url, json=text)
        assert none.status_code == 401, none.text
        assert "Authorization: Bearer" in none.json()["error"] and none.json()["hint"]
        assert none.headers["www-authenticate"].startswith("Bearer")
        wrong = _post(url, json=text, headers={"Authorization": "Bearer " + "w" * 32})
        assert wrong.status_code == 403 and "not valid" in wrong.json()["error"], wrong.text
        # the bucket is empty now (half a request a second): a 429 the page can wait out
        flood = [_post(url, json=text, headers=bearer) for _ in range(6)]
        codes = [r.status_code for r in flood]
        assert 429 in codes and set(codes) <= {200, 429}, codes
        limited = next(r for r in flood if r.status_code == 429)
        assert int(limited.headers["retry-after"]) >= 1
        assert "too many requests" in limited.json()["error"]
        assert "wait" in limited.json()["hint"]
    finally:
        console.stop()
        predictor.stop()
    assert "Traceback" not in console.tail()
